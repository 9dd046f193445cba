using Microsoft.Extensions.Logging.Abstractions;
using Replicator.Core.Configuration;
using Replicator.Snapshotter;
using Replicator.Tests.Fixtures;

namespace Replicator.Tests.Snapshot;

public class SnapshotSettingsTests(PostgresFixture fixture) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task Tables_copied_as_text_keep_their_values_whatever_output_settings_the_two_databases_have()
    {
        await using var db = await fixture.CreateDatabasesAsync("snapshot_settings");
        // An enum array makes the table go as text COPY (binary enum arrays carry type oids).
        await Sql.ExecAsync(db.SourceConnectionString, """
            CREATE TYPE mood AS ENUM ('ok', 'sad');
            CREATE TABLE public.shaped (id int PRIMARY KEY, moods mood[], f float8, d date, iv interval, b bytea);
            INSERT INTO public.shaped VALUES (1, '{ok,sad}', 0.1::float8 + 0.2::float8, '2026-12-05', '1 year -3 days 04:05:06.7', '\x00ff'),
                                             (2, '{}', 2::float8 / 3, '2026-01-12', '-1 day +2 hours', '\x');
            """);
        // PostgreSQL 10/11's default float output, and date styles that read each other's dates wrongly.
        await Sql.ExecAsync(db.SourceConnectionString, $"""
            ALTER DATABASE "{db.Name}" SET extra_float_digits = 0; ALTER DATABASE "{db.Name}" SET DateStyle = 'SQL, DMY';
            ALTER DATABASE "{db.Name}" SET IntervalStyle = 'sql_standard'; ALTER DATABASE "{db.Name}" SET bytea_output = 'escape';
            """);
        await Sql.ExecAsync(db.TargetConnectionString, $"""ALTER DATABASE "{db.Name}" SET DateStyle = 'SQL, MDY'""");
        var options = new ReplicatorOptions { SlotName = "snapshot_settings", PublicationName = "snapshot_settings" };

        await SnapshotRunner.RunAsync(options, ConnectionInfo.Parse(db.SourceUri, "Source"), ConnectionInfo.Parse(db.TargetUri, "Target"),
            NullLoggerFactory.Instance, null, CancellationToken.None);

        await Compare.AssertSameAsync(db);
    }
}
