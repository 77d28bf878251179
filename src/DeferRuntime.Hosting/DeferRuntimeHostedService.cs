using Microsoft.Extensions.Hosting;

namespace DeferRuntime.Hosting;

/// <summary>
/// Boots the runtime when the host starts, before any other hosted service (StartingAsync), and shuts it
/// down after every other hosted service has stopped (StoppedAsync): the web server and background
/// producers are quiet by then, so the drain can finish. Both within the host's tokens.
/// </summary>
internal sealed class DeferRuntimeHostedService(DeferRuntimeHost host) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken)
    {
        _ = host.Runtime; // boot (a bad option or workqueue registration fails the host's start here)
        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => host.StopAsync(cancellationToken);
}
