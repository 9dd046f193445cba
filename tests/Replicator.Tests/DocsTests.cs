using System.Text.RegularExpressions;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

/// <summary>Reference pages quote the commands' --help: these tests keep the two from drifting.</summary>
public class DocsTests
{
    public static TheoryData<string, string> UsageBlocks()
    {
        var data = new TheoryData<string, string>();
        foreach (var page in Directory.GetFiles(Path.Combine(Repository.Root, "docs"), "*.md").Order(StringComparer.Ordinal))
        {
            foreach (Match block in Regex.Matches(File.ReadAllText(page), "```\n(Description:\n.*?)```", RegexOptions.Singleline))
            {
                var command = Regex.Match(block.Groups[1].Value, @"Usage:\n  replicator ([a-z-]+(?: [a-z-]+)?) \[").Groups[1].Value;
                data.Add(Path.GetFileName(page), command);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(UsageBlocks))]
    public async Task A_usage_block_in_the_docs_is_exactly_the_commands_help(string page, string command)
    {
        var text = File.ReadAllText(Path.Combine(Repository.Root, "docs", page));
        var help = await ProcessRunner.ReplicatorAsync([.. command.Split(' '), "--help"]);
        Assert.Equal(0, help.ExitCode);
        var blocks = Regex.Matches(text, "```\n(Description:\n.*?)```", RegexOptions.Singleline).Select(b => b.Groups[1].Value.TrimEnd());
        Assert.True(blocks.Contains(help.Stdout.TrimEnd(), StringComparer.Ordinal),
            $"docs/{page}: the usage block of 'replicator {command}' differs from its --help; run scripts/docs-usage.py. Current output:\n{help.Stdout}");
    }

    [Fact]
    public void Every_implemented_command_has_a_reference_page_quoting_its_help()
    {
        var commands = UsageBlocks().Select(row => (string)row[1]).ToHashSet();
        foreach (var command in new[] { "run", "capture", "apply", "status", "snapshot", "preflight", "verify", "cutover", "rollback" })
            Assert.Contains(command, commands);
    }
}

/// <summary>The Kubernetes manifests run the CLI: every argument list they give must parse.</summary>
public class ManifestArgumentsTests
{
    public static TheoryData<string, string> ArgumentLists()
    {
        var data = new TheoryData<string, string>();
        foreach (var file in Directory.GetFiles(Path.Combine(Repository.Root, "deploy", "k8s"), "*.yaml", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            foreach (Match args in Regex.Matches(File.ReadAllText(file), @"^\s*args:\s*(\[.*\])\s*$", RegexOptions.Multiline))
                data.Add(Path.GetRelativePath(Repository.Root, file), args.Groups[1].Value);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ArgumentLists))]
    public void A_manifests_arguments_parse_with_the_replicator_command(string file, string json)
    {
        var args = System.Text.Json.JsonSerializer.Deserialize<string[]>(json)!;
        var parse = Replicator.Cli.CliApp.Build().Parse(args);
        Assert.True(parse.Errors.Count == 0, $"{file}: replicator {string.Join(' ', args)}: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
        Assert.NotEqual("replicator", parse.CommandResult.Command.Name);
    }

    [Fact]
    public void Every_deployment_kind_is_covered()
    {
        var commands = ArgumentLists().Select(row => System.Text.Json.JsonSerializer.Deserialize<string[]>((string)row[1])![0]).ToHashSet();
        Assert.Superset(new HashSet<string> { "run", "capture", "apply", "snapshot", "verify", "sync" }, commands);
    }

    [Fact]
    public void An_unknown_flag_in_a_manifest_would_be_caught()
    {
        Assert.NotEmpty(Replicator.Cli.CliApp.Build().Parse(["verify", "--intervall", "6h"]).Errors);
    }
}
