using System.Text.RegularExpressions;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests;

/// <summary>Reference pages quote the commands' --help: these tests keep the two from drifting.</summary>
public class DocsTests
{
    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Replicator.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    public static TheoryData<string, string> UsageBlocks()
    {
        var data = new TheoryData<string, string>();
        foreach (var page in Directory.GetFiles(Path.Combine(RepositoryRoot(), "docs"), "*.md").Order(StringComparer.Ordinal))
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
        var text = File.ReadAllText(Path.Combine(RepositoryRoot(), "docs", page));
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
        foreach (var command in new[] { "run", "capture", "apply", "status", "snapshot", "preflight", "verify" })
            Assert.Contains(command, commands);
    }
}
