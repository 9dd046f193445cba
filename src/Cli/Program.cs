return await Replicator.Cli.CliApp.RunAsync(args).ConfigureAwait(false);
