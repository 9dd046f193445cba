using System.CommandLine;
using Replicator.Core.Configuration;

namespace Replicator.Cli.Commands;

/// <summary><c>replicator config show</c>: the effective configuration with every secret masked.</summary>
public static class ConfigCommand
{
    public static Command Create(GlobalOptions globals)
    {
        var show = new Command("show", "Print the effective configuration (file + REPLICATOR_* environment + flags) as JSON, secrets masked.");
        show.SetAction(parse =>
        {
            var options = globals.Load(parse);
            // Parse the connection strings too, so a bad one fails here with its key named.
            if (options.Source.ConnectionString is not null)
                ConfigLoader.ResolveSource(options);
            if (options.Target.ConnectionString is not null)
                ConfigLoader.ResolveTarget(options);
            Console.Out.WriteLine(ConfigLoader.ToRedactedJson(options));
            return ExitCodes.Ok;
        });
        var command = new Command("config", "Inspect the configuration.");
        command.Subcommands.Add(show);
        return command;
    }
}
