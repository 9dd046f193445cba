using Microsoft.Extensions.Logging;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Cutover;

/// <summary>What a cutover's preconditions ask for, on the smallest data: a replicated table of 100 rows, caught up, one clean verifier pass.</summary>
internal static class ReadyForCutover
{
    public static async Task<Fixtures.Replication> StartAsync(TestDatabases db, ILoggerFactory loggers)
    {
        var replication = await Fixtures.Replication.PrepareAsync(db, "CREATE TABLE product (id int PRIMARY KEY, name text);");
        try
        {
            replication.Start();
            await Sql.ExecAsync(db.SourceConnectionString, "INSERT INTO product SELECT g, 'product ' || g FROM generate_series(1, 100) g");
            await replication.CatchUpAsync();
            await CutoverTests.VerifyCleanAsync(db, replication.Slot, loggers);
            return replication;
        }
        catch
        {
            await replication.DisposeAsync();
            throw;
        }
    }
}
