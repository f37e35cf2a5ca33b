return await Verification.Auditor.Cli.RunAsync(args);
