namespace Replicator.Tests.Fixtures;

/// <summary>The checkout the tests run from.</summary>
public static class Repository
{
    /// <summary>The directory holding Replicator.sln, found above the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Replicator.sln")))
                return dir.FullName;
        }

        throw new InvalidOperationException($"Replicator.sln not found above {AppContext.BaseDirectory}");
    }
}
