// A web service whose request path runs only a top half; the rest is deferred to a tasklet and a workqueue.
//   dotnet run --project samples/WebService                 serves on http://127.0.0.1:5080 until Ctrl+C
//   curl -X POST 'http://127.0.0.1:5080/readings?device=a&value=1.5'; curl http://127.0.0.1:5080/stats
//   dotnet run --project samples/WebService -- --demo       the graceful-shutdown demonstration
using DeferRuntime.Samples.WebService;

if (args.Contains("--demo"))
{
    return await IngestApp.RunDemoAsync(requests: 1000);
}
await IngestApp.Build(args).RunAsync();
return 0;
