using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Verify;

public class VerifyDocsTests
{
    [Fact]
    public async Task The_verify_reference_page_shows_the_current_help_text()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Replicator.sln")))
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("repository root not found above the test binaries");

        var help = await ProcessRunner.ReplicatorAsync(["verify", "--help"]);
        var page = await File.ReadAllTextAsync(Path.Combine(root, "docs", "verify.md"));

        Assert.Equal(0, help.ExitCode);
        Assert.Contains(help.Stdout.Trim().ReplaceLineEndings("\n"), page.ReplaceLineEndings("\n"), StringComparison.Ordinal);
    }
}
