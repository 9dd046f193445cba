using System.Text;
using Replicator.Capture;
using Replicator.Core.Changes;
using Replicator.Core.Errors;

namespace Replicator.Tests.Replication;

public class PgOutputReaderTests
{
    [Fact]
    public void A_tuple_decodes_nulls_unchanged_toast_and_utf8_text()
    {
        var bytes = new List<byte> { 0, 4, (byte)'n', (byte)'u', (byte)'t' };
        var text = Encoding.UTF8.GetBytes("grüße 🐘");
        bytes.AddRange([0, 0, 0, (byte)text.Length]);
        bytes.AddRange(text);
        bytes.AddRange([(byte)'t', 0, 0, 0, 0]);
        var reader = new PgOutputReader(bytes.ToArray(), bytes.Count);

        var values = reader.Tuple();

        Assert.Equal([ColumnValue.Null, ColumnValue.UnchangedToast, ColumnValue.Of("grüße 🐘"), ColumnValue.Of("")], values);
        Assert.True(reader.AtEnd);
    }

    [Fact]
    public void A_truncated_message_is_a_clear_error_not_garbage()
    {
        // Two columns announced, a text value of 10 bytes announced, 3 bytes present.
        byte[] bytes = [0, 2, (byte)'t', 0, 0, 0, 10, (byte)'a', (byte)'b', (byte)'c'];
        var e = Assert.Throws<ReplicationException>(() => new PgOutputReader(bytes, bytes.Length).Tuple());
        Assert.Contains("malformed pgoutput message", e.Message, StringComparison.Ordinal);
        Assert.Contains("10 more needed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_value_kind_names_it()
    {
        byte[] bytes = [0, 1, (byte)'x'];
        var e = Assert.Throws<ReplicationException>(() => new PgOutputReader(bytes, bytes.Length).Tuple());
        Assert.Contains("unknown tuple value kind 'x'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_spool_drops_a_rolled_back_subtransaction_and_an_aborted_transaction_and_replays_the_rest_in_order()
    {
        var directory = Path.Combine(Path.GetTempPath(), $"spool-test-{Guid.NewGuid():N}");
        using (var spool = new StreamSpool(directory))
        {
            // BEGIN; change; SAVEPOINT a; change; SAVEPOINT b; 2 changes; ROLLBACK TO b; change in a; RELEASE a; change; COMMIT
            spool.Append(100, 100, 1, "top-1"u8);
            spool.Append(100, 101, 2, "in-a"u8);
            spool.Append(100, 102, 3, "in-b"u8);
            spool.Append(200, 200, 4, "other"u8); // another streamed transaction, interleaved
            spool.Append(100, 102, 5, "in-b-2"u8);
            spool.Abort(100, 102);
            spool.Abort(100, 103); // a subtransaction that changed nothing published
            spool.Append(100, 101, 6, "in-a-2"u8);
            spool.Append(100, 100, 7, "top-2"u8);
            spool.Abort(200, 200);
            Assert.Equal(1, spool.OpenTransactions);

            using var replay = spool.Commit(100);
            var buffer = new byte[2];
            var seen = new List<(ulong, string)>();
            while (replay.TryRead(ref buffer, out var length, out var walStart))
                seen.Add((walStart, Encoding.ASCII.GetString(buffer, 0, length)));
            Assert.Equal([(1UL, "top-1"), (2UL, "in-a"), (6UL, "in-a-2"), (7UL, "top-2")], seen);
            Assert.Equal(0, spool.OpenTransactions);
        }

        Assert.False(Directory.Exists(directory));
    }

    [Fact]
    public void Array_literal_elements_quote_everything_and_escape_quotes_and_backslashes()
    {
        var literal = new StringBuilder("{");
        string?[] values = [null, "", "NULL", "a,b", "{x}", "say \"hi\"", "C:\\path", "ünï\ncödé"];
        for (var i = 0; i < values.Length; i++)
        {
            if (i > 0)
                literal.Append(',');
            Replicator.Core.Sql.ArrayLiteral.AppendElement(literal, values[i]);
        }

        Assert.Equal("{NULL,\"\",\"NULL\",\"a,b\",\"{x}\",\"say \\\"hi\\\"\",\"C:\\\\path\",\"ünï\ncödé\"}", literal.Append('}').ToString());
    }
}
