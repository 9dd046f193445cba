using System.Globalization;
using Replicator.Bench;

// bench-writer ENDPOINT_FILE RATE STOP_FILE ACKED_FILE
// Writes like an application (see AppWriter) until STOP_FILE exists, then writes every acknowledged
// n to ACKED_FILE and prints one summary line: acknowledged, errors, unique violations, longest gap (ms).
if (args.Length != 4)
{
    Console.Error.WriteLine("usage: bench-writer ENDPOINT_FILE RATE STOP_FILE ACKED_FILE");
    return 2;
}

var writer = new AppWriter(args[0], int.Parse(args[1], CultureInfo.InvariantCulture));
writer.Start();
while (!File.Exists(args[2]))
    await Task.Delay(20);
await writer.DisposeAsync();
await File.WriteAllLinesAsync(args[3], writer.Acknowledged.Keys.Order().Select(n => n.ToString(CultureInfo.InvariantCulture)));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"acknowledged={writer.Acknowledged.Count} errors={writer.Errors} unique_violations={writer.UniqueViolations} longest_gap_ms={writer.LongestGap.TotalMilliseconds:0}"));
return 0;
