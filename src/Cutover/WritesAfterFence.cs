using System.Buffers.Binary;
using System.Text;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Replicator.Core.State;

namespace Replicator.Cutover;

/// <summary>
/// Finds writes that committed on the side being left after the fence mark: a session that
/// overrode the database's read-only default (<c>BEGIN READ WRITE</c>, <c>SET
/// default_transaction_read_only = off</c>), a role of <c>--allow-role</c>, or, behind a pooler
/// fence, a client that bypassed the pooler. The applier holds before such a transaction, so it
/// would never reach the target: the cutover must not switch.
/// <para>
/// How: a temporary logical slot of its own (pgoutput, the replicated publication), created on a
/// session of its own before the fence — creating a slot waits for the transactions running then,
/// which must not lengthen the outage. Once the fence LSN is known the slot is moved up to it
/// while the drain runs; just before the switch what follows the mark is decoded, and a row change
/// in a transaction that committed after the mark is a write that got through.
/// </para>
/// Where the role may not create a slot (no REPLICATION attribute) or none is free, the check is
/// skipped and the report says so.
/// </summary>
internal sealed class WritesAfterFence : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly string _slot;
    private readonly string _publication;

    private WritesAfterFence(NpgsqlConnection connection, string slot, string publication)
    {
        _connection = connection;
        _slot = slot;
        _publication = publication;
    }

    /// <summary>The watch's session: the fence must leave it alone.</summary>
    public int ProcessId => _connection.ProcessID;

    /// <summary>How long creating the slot may wait for transactions running at the time.</summary>
    internal static readonly TimeSpan CreateTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Creates the watch's slot; where it cannot, no watch and the reason it was skipped.</summary>
    public static async Task<(WritesAfterFence? Watch, string? Skipped)> StartAsync(Func<CancellationToken, Task<NpgsqlConnection>> open, string publication,
        CancellationToken cancellationToken)
    {
        var connection = await open(cancellationToken).ConfigureAwait(false);
        var slot = $"replicator_fence_watch_{connection.ProcessID}";
        try
        {
            await using var create = new NpgsqlCommand("SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)", connection)
            {
                CommandTimeout = (int)CreateTimeout.TotalSeconds,
            };
            create.Parameters.AddWithValue(slot);
            await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return (new WritesAfterFence(connection, slot, publication), null);
        }
        catch (Exception e) when (e is PostgresException or NpgsqlException { InnerException: TimeoutException })
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            var why = e is PostgresException p ? $"{p.MessageText} ({p.SqlState})" : $"creating a logical slot waited more than {CreateTimeout.TotalSeconds:0} s for running transactions";
            return (null, $"writes after the fence not checked: {why}; give the cutover's role the REPLICATION attribute and a free replication slot");
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Moves the slot up to the fence LSN (decoding nothing into output), so the check before the
    /// switch decodes only what followed the mark. PostgreSQL 10 has no slot advance: the check
    /// then decodes from the slot's creation.
    /// </summary>
    public void StartAdvance(NpgsqlLogSequenceNumber fenceLsn, CancellationToken cancellationToken) =>
        _advancing = AdvanceAsync(fenceLsn, cancellationToken);

    private Task? _advancing;

    private async Task AdvanceAsync(NpgsqlLogSequenceNumber fenceLsn, CancellationToken cancellationToken)
    {
        if (_connection.PostgreSqlVersion.Major < 11)
            return;
        await using var advance = new NpgsqlCommand("SELECT pg_replication_slot_advance($1, $2)", _connection);
        advance.Parameters.AddWithValue(_slot);
        advance.Parameters.Add(new NpgsqlParameter { Value = fenceLsn, NpgsqlDbType = NpgsqlDbType.PgLsn });
        await advance.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The first row change of a transaction that committed after <paramref name="fenceLsn"/>, as
    /// "table (transaction xid, commit LSN)"; null when there is none.
    /// </summary>
    public async Task<string?> FindAsync(NpgsqlLogSequenceNumber fenceLsn, CancellationToken cancellationToken)
    {
        if (_advancing is { } advancing)
            await advancing.ConfigureAwait(false);
        // Decoding reads only flushed WAL, and a writer with synchronous_commit = off leaves its
        // commit unflushed for a while: a commit of our own with it on flushes everything before it.
        // (It changes no row: pgoutput sends nothing for it.)
        await using (var flush = new NpgsqlCommand(
            "BEGIN; SET LOCAL synchronous_commit = on; SELECT pg_logical_emit_message(true, 'replicator.cutover', 'check'); COMMIT", _connection))
            await flush.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        await using var peek = new NpgsqlCommand(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)", _connection);
        peek.Parameters.AddWithValue(_slot);
        peek.Parameters.AddWithValue(PublicationNames(_publication));
        var relations = new Dictionary<uint, string>();
        var (commitLsn, xid) = (0UL, 0U);
        await using var reader = await peek.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var message = (byte[])reader.GetValue(0);
            switch ((char)message[0])
            {
                case 'B': // final (commit) LSN, commit time, xid
                    commitLsn = BinaryPrimitives.ReadUInt64BigEndian(message.AsSpan(1));
                    xid = BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(17));
                    break;
                case 'R': // relation id, schema, name, …
                {
                    var id = BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(1));
                    var schemaEnd = Array.IndexOf(message, (byte)0, 5);
                    var nameEnd = Array.IndexOf(message, (byte)0, schemaEnd + 1);
                    relations[id] = Encoding.UTF8.GetString(message, 5, schemaEnd - 5) + "." + Encoding.UTF8.GetString(message, schemaEnd + 1, nameEnd - schemaEnd - 1);
                    break;
                }

                case 'I' or 'U' or 'D' or 'T' when commitLsn > (ulong)fenceLsn:
                {
                    // A truncate lists its relations after a count and an options byte.
                    var id = BinaryPrimitives.ReadUInt32BigEndian(message.AsSpan(message[0] == 'T' ? 6 : 1));
                    var table = relations.GetValueOrDefault(id) ?? $"relation {id}";
                    // Replicator's own state (a reverse set-up writes its position there) is no application write.
                    if (table.StartsWith(TargetState.Schema + ".", StringComparison.Ordinal))
                        break;
                    return $"{table} (transaction {xid}, commit LSN {new NpgsqlLogSequenceNumber(commitLsn)})";
                }
            }
        }

        return null;
    }

    /// <summary>pgoutput's publication_names option: a list of identifiers, so a name is quoted.</summary>
    private static string PublicationNames(string publication) => "\"" + publication.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    public async ValueTask DisposeAsync()
    {
        // A cutover that failed during the drain may leave the advance running on this session.
        if (_advancing is { } advancing)
            await advancing.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        try
        {
            await using var drop = new NpgsqlCommand("SELECT pg_drop_replication_slot($1)", _connection);
            drop.Parameters.AddWithValue(_slot);
            await drop.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // A temporary slot goes with its session anyway.
        }

        await _connection.DisposeAsync().ConfigureAwait(false);
    }
}
