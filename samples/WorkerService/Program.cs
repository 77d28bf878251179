// A worker service with a device, its IRQ line, a top half and a workqueue bottom half.
//   dotnet run --project samples/WorkerService                   until Ctrl+C
//   dotnet run --project samples/WorkerService -- --samples 400  stops by itself after 400 samples
using DeferRuntime.Hosting;
using DeferRuntime.Samples.WorkerService;
using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddDeferRuntime(o => o.CpuCount = 2)
    .AddWorkqueue(SensorDevice.Workqueue, WorkqueueFlags.None);
builder.Services.AddSingleton<SensorDevice>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<SensorDevice>());

using var host = builder.Build();
var device = host.Services.GetRequiredService<SensorDevice>();
await host.RunAsync();
device.Report(); // after the hosting's drain: consumed == produced
