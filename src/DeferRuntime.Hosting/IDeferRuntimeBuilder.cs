using DeferRuntime.Workqueues;
using Microsoft.Extensions.DependencyInjection;

namespace DeferRuntime.Hosting;

/// <summary>Configures the DeferRuntime that <see cref="DeferRuntimeServiceCollectionExtensions.AddDeferRuntime"/> added.</summary>
public interface IDeferRuntimeBuilder
{
    /// <summary>The service collection the runtime is registered in.</summary>
    IServiceCollection Services { get; }

    /// <summary>
    /// alloc_workqueue() at boot: a workqueue named <paramref name="name"/>, resolvable by that name as a
    /// keyed service (<c>[FromKeyedServices("name")] Workqueue wq</c>, <c>GetRequiredKeyedService&lt;Workqueue&gt;("name")</c>)
    /// and through <see cref="DeferRuntimeHost.GetWorkqueue"/>. Flags, max_active and attributes as
    /// <see cref="Runtime.AllocWorkqueue"/>; bad combinations fail the host's start, naming the rule.
    /// </summary>
    IDeferRuntimeBuilder AddWorkqueue(string name, WorkqueueFlags flags = WorkqueueFlags.None, int maxActive = 0, WorkqueueAttrs? attrs = null);

    /// <summary>alloc_ordered_workqueue() at boot: as <see cref="AddWorkqueue"/>, one item at a time in queueing order.</summary>
    IDeferRuntimeBuilder AddOrderedWorkqueue(string name, WorkqueueFlags flags = WorkqueueFlags.None);
}

/// <summary>One workqueue to allocate at boot.</summary>
internal sealed record WorkqueueRegistration(string Name, WorkqueueFlags Flags, int MaxActive, WorkqueueAttrs? Attrs, bool Ordered);

internal sealed class DeferRuntimeBuilder(IServiceCollection services) : IDeferRuntimeBuilder
{
    public IServiceCollection Services { get; } = services;

    public IDeferRuntimeBuilder AddWorkqueue(string name, WorkqueueFlags flags = WorkqueueFlags.None, int maxActive = 0, WorkqueueAttrs? attrs = null) =>
        Add(new WorkqueueRegistration(name, flags, maxActive, attrs, Ordered: false));

    public IDeferRuntimeBuilder AddOrderedWorkqueue(string name, WorkqueueFlags flags = WorkqueueFlags.None) =>
        Add(new WorkqueueRegistration(name, flags, 0, null, Ordered: true));

    private DeferRuntimeBuilder Add(WorkqueueRegistration registration)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(registration.Name);
        if (Services.Any(d => d.ServiceType == typeof(WorkqueueRegistration) && d.ImplementationInstance is WorkqueueRegistration r && r.Name == registration.Name))
        {
            throw new InvalidOperationException($"AddWorkqueue(\"{registration.Name}\"): a workqueue of that name is already registered; names identify workqueues in DI.");
        }
        Services.AddSingleton(registration);
        // The container disposes what its factories made: Workqueue.Dispose() is destroy_workqueue(), a
        // no-op once the hosted service has shut the runtime down.
        Services.AddKeyedSingleton<Workqueue>(registration.Name, static (sp, key) => sp.GetRequiredService<DeferRuntimeHost>().GetWorkqueue((string)key!));
        return this;
    }
}
