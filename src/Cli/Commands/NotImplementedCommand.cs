using System.CommandLine;

namespace Replicator.Cli.Commands;

/// <summary>
/// A subcommand the design names but that is not built yet. It says so and exits
/// <see cref="ExitCodes.NotImplemented"/>: it never pretends to succeed.
/// </summary>
public static class NotImplementedCommand
{
    public static Command Create(string name, string description, string trackedIn)
    {
        var command = new Command(name, $"{description} [not implemented yet]");
        command.SetAction(parse =>
        {
            Console.Error.WriteLine($"replicator {name}: not implemented yet ({trackedIn}). Nothing was done.");
            return ExitCodes.NotImplemented;
        });
        return command;
    }
}
