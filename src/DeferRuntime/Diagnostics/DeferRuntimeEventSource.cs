using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Diagnostics;

/// <summary>
/// The kernel's tracepoints (include/trace/events/irq.h and workqueue.h) as an <see cref="EventSource"/>
/// named "DeferRuntime": irq_handler_entry/exit, softirq_raise/entry/exit, tasklet_entry/exit,
/// workqueue_queue_work/activate_work/execute_start/execute_end. The events carry the kernel's names, so
/// <c>dotnet-trace collect --providers DeferRuntime</c> shows what <c>perf trace -e irq:*</c> would.
/// </summary>
/// <remarks>
/// <para>Every event is <see cref="EventLevel.Verbose"/> and belongs to one keyword (<see cref="Keywords"/>),
/// so a session can take only the workqueue events, say. The runtime's hot paths read one static
/// volatile flag per keyword (<see cref="IrqOn"/> and friends, recomputed on every enable/disable
/// command) and call the event method only when it is set: while nobody listens a tracepoint costs one
/// load and a predictable branch, and its arguments are not even evaluated.</para>
/// <para>The event methods write through <see cref="EventSource.WriteEventCore"/> with the arguments on the
/// stack (no params object[]), so an EventPipe session (dotnet-trace, dotnet-monitor) costs no allocation
/// either; an in-process <see cref="EventListener"/> gets boxed payloads, as EventSource always does.</para>
/// <para>Tracepoints fire in the context of the code they trace, as the kernel's do: hard-IRQ context on
/// cpu/N, softirq context, and workqueue_activate_work under a worker pool's lock. An
/// <see cref="EventListener"/> runs there synchronously: it must be quick and must not call back into the
/// runtime (the kernel's rule for tracepoint probes).</para>
/// </remarks>
[EventSource(Name = SourceName)]
public sealed class DeferRuntimeEventSource : EventSource
{
    /// <summary>The event source's name, "DeferRuntime" (the provider name for dotnet-trace).</summary>
    public const string SourceName = "DeferRuntime";

    /// <summary>The one instance; made when the first runtime boots (or on first use).</summary>
    public static readonly DeferRuntimeEventSource Log = new();

    // A: recomputed by OnEventCommand from IsEnabled(Verbose, keyword), read by the hot paths. volatile so a
    // long-running loop (cpu/N, a worker) sees a new session without the JIT hoisting the read out of it.
    private static volatile bool s_irq, s_softirq, s_tasklet, s_workqueue;

    private DeferRuntimeEventSource()
    {
    }

    /// <summary>Keyword groups: enable one subsystem's tracepoints at a time.</summary>
    public static class Keywords
    {
        /// <summary>irq_handler_entry, irq_handler_exit.</summary>
        public const EventKeywords Irq = (EventKeywords)0x1;

        /// <summary>softirq_raise, softirq_entry, softirq_exit.</summary>
        public const EventKeywords Softirq = (EventKeywords)0x2;

        /// <summary>tasklet_entry, tasklet_exit.</summary>
        public const EventKeywords Tasklet = (EventKeywords)0x4;

        /// <summary>workqueue_queue_work, workqueue_activate_work, workqueue_execute_start, workqueue_execute_end.</summary>
        public const EventKeywords Workqueue = (EventKeywords)0x8;
    }

    /// <summary>A session takes the irq events. PERF: the hot-path guard.</summary>
    internal static bool IrqOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => s_irq;
    }

    /// <summary>A session takes the softirq events.</summary>
    internal static bool SoftirqOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => s_softirq;
    }

    /// <summary>A session takes the tasklet events.</summary>
    internal static bool TaskletOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => s_tasklet;
    }

    /// <summary>A session takes the workqueue events.</summary>
    internal static bool WorkqueueOn
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => s_workqueue;
    }

    /// <inheritdoc />
    protected override void OnEventCommand(EventCommandEventArgs command)
    {
        // IsEnabled(level, keywords) answers for the union of every session still attached, so recomputing
        // all four on each command (enable, update, disable) keeps them exact as sessions come and go.
        s_irq = IsEnabled(EventLevel.Verbose, Keywords.Irq);
        s_softirq = IsEnabled(EventLevel.Verbose, Keywords.Softirq);
        s_tasklet = IsEnabled(EventLevel.Verbose, Keywords.Tasklet);
        s_workqueue = IsEnabled(EventLevel.Verbose, Keywords.Workqueue);
    }

    // The event methods: names are the kernel's tracepoints (that is what users search for), hence the
    // underscores; internal, so they are no part of the public surface. Strings are never null here: a
    // null would make the fixed pointer null, which EventSource rejects.

#pragma warning disable CA1707, IDE1006 // kernel tracepoint names on purpose

    /// <summary>irq_handler_entry: handler <paramref name="name"/> of line <paramref name="irq"/> starts on <paramref name="cpu"/>, in hard-IRQ context.</summary>
    [Event(1, Level = EventLevel.Verbose, Keywords = Keywords.Irq)]
    internal unsafe void irq_handler_entry(int irq, string name, int cpu)
    {
        fixed (char* n = name)
        {
            EventData* d = stackalloc EventData[3];
            Int(d, &irq);
            Str(d + 1, n, name);
            Int(d + 2, &cpu);
            WriteEventCore(1, 3, d);
        }
    }

    /// <summary>irq_handler_exit: the handler returned <paramref name="ret"/> (IRQ_NONE 0, IRQ_HANDLED 1, IRQ_WAKE_THREAD 2). Carries the name too, so entry and exit pair without state.</summary>
    [Event(2, Level = EventLevel.Verbose, Keywords = Keywords.Irq)]
    internal unsafe void irq_handler_exit(int irq, string name, int ret, int cpu)
    {
        fixed (char* n = name)
        {
            EventData* d = stackalloc EventData[4];
            Int(d, &irq);
            Str(d + 1, n, name);
            Int(d + 2, &ret);
            Int(d + 3, &cpu);
            WriteEventCore(2, 4, d);
        }
    }

    /// <summary>softirq_raise: vector <paramref name="vec"/> (<paramref name="name"/>, as /proc/softirqs names it) marked pending on <paramref name="cpu"/>.</summary>
    [Event(3, Level = EventLevel.Verbose, Keywords = Keywords.Softirq)]
    internal void softirq_raise(int vec, string name, int cpu) => WriteVector(3, vec, name, cpu);

    /// <summary>softirq_entry: the action of vector <paramref name="vec"/> starts on <paramref name="cpu"/>.</summary>
    [Event(4, Level = EventLevel.Verbose, Keywords = Keywords.Softirq)]
    internal void softirq_entry(int vec, string name, int cpu) => WriteVector(4, vec, name, cpu);

    /// <summary>softirq_exit: the action of vector <paramref name="vec"/> returned.</summary>
    [Event(5, Level = EventLevel.Verbose, Keywords = Keywords.Softirq)]
    internal void softirq_exit(int vec, string name, int cpu) => WriteVector(5, vec, name, cpu);

    /// <summary>tasklet_entry: tasklet <paramref name="name"/> (<paramref name="tasklet"/> identifies the instance, as the kernel's pointer) starts on <paramref name="cpu"/>.</summary>
    [Event(6, Level = EventLevel.Verbose, Keywords = Keywords.Tasklet)]
    internal void tasklet_entry(int tasklet, string name, int cpu) => WriteVector(6, tasklet, name, cpu);

    /// <summary>tasklet_exit: the tasklet's callback returned.</summary>
    [Event(7, Level = EventLevel.Verbose, Keywords = Keywords.Tasklet)]
    internal void tasklet_exit(int tasklet, string name, int cpu) => WriteVector(7, tasklet, name, cpu);

    /// <summary>
    /// workqueue_queue_work: work item <paramref name="function"/> (<paramref name="work"/> identifies the
    /// instance) queued on <paramref name="workqueue"/>, requested from CPU <paramref name="req_cpu"/> (-1:
    /// a thread of no CPU) for the pool of CPU <paramref name="cpu"/> (-1: unbound).
    /// </summary>
    [Event(8, Level = EventLevel.Verbose, Keywords = Keywords.Workqueue)]
    internal unsafe void workqueue_queue_work(int work, string function, string workqueue, int req_cpu, int cpu)
    {
        fixed (char* f = function)
        fixed (char* w = workqueue)
        {
            EventData* d = stackalloc EventData[5];
            Int(d, &work);
            Str(d + 1, f, function);
            Str(d + 2, w, workqueue);
            Int(d + 3, &req_cpu);
            Int(d + 4, &cpu);
            WriteEventCore(8, 5, d);
        }
    }

    /// <summary>workqueue_activate_work: the item got a max_active slot and went onto its pool's worklist.</summary>
    [Event(9, Level = EventLevel.Verbose, Keywords = Keywords.Workqueue)]
    internal void workqueue_activate_work(int work, string function) => WriteWork(9, work, function);

    /// <summary>workqueue_execute_start: a worker starts the item's function.</summary>
    [Event(10, Level = EventLevel.Verbose, Keywords = Keywords.Workqueue)]
    internal void workqueue_execute_start(int work, string function) => WriteWork(10, work, function);

    /// <summary>workqueue_execute_end: the item's function returned.</summary>
    [Event(11, Level = EventLevel.Verbose, Keywords = Keywords.Workqueue)]
    internal void workqueue_execute_end(int work, string function) => WriteWork(11, work, function);

#pragma warning restore CA1707, IDE1006

    [NonEvent]
    private unsafe void WriteVector(int id, int nr, string name, int cpu)
    {
        fixed (char* n = name)
        {
            EventData* d = stackalloc EventData[3];
            Int(d, &nr);
            Str(d + 1, n, name);
            Int(d + 2, &cpu);
            WriteEventCore(id, 3, d);
        }
    }

    [NonEvent]
    private unsafe void WriteWork(int id, int work, string function)
    {
        fixed (char* f = function)
        {
            EventData* d = stackalloc EventData[2];
            Int(d, &work);
            Str(d + 1, f, function);
            WriteEventCore(id, 2, d);
        }
    }

    [NonEvent]
    private static unsafe void Int(EventData* d, int* value)
    {
        d->DataPointer = (IntPtr)value;
        d->Size = sizeof(int);
    }

    [NonEvent]
    private static unsafe void Str(EventData* d, char* chars, string s)
    {
        d->DataPointer = (IntPtr)chars;
        d->Size = (s.Length + 1) * sizeof(char); // with the terminating NUL
    }
}
