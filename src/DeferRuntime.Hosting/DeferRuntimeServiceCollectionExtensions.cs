using System.Diagnostics.Metrics;
using DeferRuntime.Locking;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DeferRuntime.Hosting;

/// <summary><c>services.AddDeferRuntime(o =&gt; ...)</c>: a DeferRuntime as a service of the host.</summary>
public static class DeferRuntimeServiceCollectionExtensions
{
    /// <summary>
    /// Adds a DeferRuntime to the host: <see cref="RuntimeOptions"/> through the options pattern
    /// (<paramref name="configure"/>, or <c>services.Configure&lt;RuntimeOptions&gt;</c> / configuration
    /// binding), a <see cref="DeferRuntimeHost"/> and the <see cref="Runtime"/> as singletons, and a hosted
    /// service that boots the runtime before the other hosted services start and, after they have stopped,
    /// frees its IRQ lines and drains its bottom halves and workqueues within the host's shutdown timeout,
    /// logging what could not finish. Faults, warnings, workqueue stalls and lock-validator reports go to
    /// <c>ILogger</c> (category <c>DeferRuntime</c>; the reports of <see cref="LockValidator.Default"/>, or of a
    /// <see cref="LockValidator"/> registered in the container); the counters go to a Meter named "DeferRuntime" made by
    /// the host's <c>IMeterFactory</c>. Calling it twice adds configuration, not a second runtime.
    /// </summary>
    /// <returns>A builder for named workqueues (<see cref="IDeferRuntimeBuilder.AddWorkqueue"/>).</returns>
    public static IDeferRuntimeBuilder AddDeferRuntime(this IServiceCollection services, Action<RuntimeOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<RuntimeOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }
        services.TryAddSingleton(static sp => new DeferRuntimeHost(
            sp.GetRequiredService<IOptions<RuntimeOptions>>(),
            sp.GetServices<WorkqueueRegistration>(),
            sp.GetService<IMeterFactory>(),
            sp.GetService<ILoggerFactory>(),
            sp.GetService<LockValidator>() ?? LockValidator.Default));
        services.TryAddSingleton(static sp => sp.GetRequiredService<DeferRuntimeHost>().Runtime);
        services.AddHostedService<DeferRuntimeHostedService>(); // TryAddEnumerable inside: one per container
        return new DeferRuntimeBuilder(services);
    }
}
