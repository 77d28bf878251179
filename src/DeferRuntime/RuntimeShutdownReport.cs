using DeferRuntime.Diagnostics;

namespace DeferRuntime;

/// <summary>What <see cref="Runtime.Shutdown"/> did: whether everything accepted ran, and what was left behind.</summary>
/// <param name="Abandoned">What was still pending when the bound ran out (softirqs, tasklets by name, workqueue items in flight), or null if everything accepted ran.</param>
/// <param name="Cancelled">The caller's token ended the drain (a host's shutdown timeout), not the runtime's own bound.</param>
/// <param name="Elapsed">From the start of shutdown to the last thread joined (or left behind).</param>
/// <param name="AbandonedTimers">Timers still armed, not yet due, when the CPUs stopped: never run early, never run (<see cref="Runtime.AbandonedTimerCount"/>).</param>
/// <param name="AbandonedDelayedWork">Of those, delayed work items (<see cref="Runtime.AbandonedDelayedWorkCount"/>).</param>
/// <param name="Panic">The panic that halted the runtime before or during shutdown (nothing was drained after it), or null.</param>
public sealed record RuntimeShutdownReport(
    string? Abandoned, bool Cancelled, TimeSpan Elapsed, long AbandonedTimers, long AbandonedDelayedWork, KernelPanicException? Panic)
{
    /// <summary>
    /// The runtime's threads that did not exit within the bound (a handler, tasklet or work item that
    /// never returned, or a thread waiting on one), each with what it is running; empty when every thread
    /// was joined. They were left running as background threads.
    /// </summary>
    public IReadOnlyList<RuntimeStuckThread> StuckThreads { get; init; } = [];

    /// <summary>
    /// Accepted items that never started and never will, each once (a softirq vector once per raise
    /// that was pending): no callback of the runtime starts after <see cref="Runtime.Shutdown"/> returns.
    /// Everything accepted that is neither here nor in <see cref="StillRunning"/> ran to its end. Armed
    /// timers not yet due are not accepted work here: <see cref="AbandonedTimers"/> counts them.
    /// </summary>
    public IReadOnlyList<RuntimeShutdownItem> NotStarted { get; init; } = [];

    /// <summary>
    /// Callbacks that started before shutdown gave up and had not returned: each one's thread is in
    /// <see cref="StuckThreads"/>. When one returns, its thread starts nothing more.
    /// </summary>
    public IReadOnlyList<RuntimeShutdownItem> StillRunning { get; init; } = [];

    /// <summary>Everything accepted ran and every thread exited (armed timers that were not due yet are not accepted work: they are counted apart).</summary>
    public bool Completed => Abandoned is null && Panic is null && StuckThreads.Count == 0 && NotStarted.Count == 0 && StillRunning.Count == 0;
}
