using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Cpus;

/// <summary>
/// rq-&gt;nr_running for one OS core: how many of the runtime's tasks that may run on that core are
/// runnable now. Idle loops on the core read it, so that they never compete with a runnable task: the
/// kernel's idle task runs only when its CPU's run queue is empty, and here an idle poll is an OS thread
/// at nice -10 (cpu/N) or nice 0 (an idle kworker) that the OS would run instead of them (DESIGN §1).
/// </summary>
/// <remarks>
/// <para>Per OS core, not per virtual CPU: the tasks compete with an idle poll for the core the OS
/// shares between them, and with more virtual CPUs than cores, cpu/0 polling on core 0 also keeps
/// cpu/2's kworkers off it. With one virtual CPU per core (the default) it is CPU N's run queue.</para>
/// <para>The tasks maintain it themselves, at their transitions, never by a scan. Counted:</para>
/// <list type="bullet">
/// <item>a kworker of a pool that may run on the core, from the kick that names it (the waker's
/// wake_up_process() makes it runnable, before it ever runs) or its creation until it idles, exits, or
/// blocks (in a runtime primitive, or outside the runtime as the wq ticker sees it); an unbound
/// worker counts on every core of its pool's mask, since the OS may run it on any of them;</item>
/// <item>ksoftirqd/N from its wake-up until it finds nothing pending (its TASK_RUNNING);</item>
/// <item>an irq thread from the wake-up of the line's handler until it finds no run pending, except
/// while it blocks in a runtime primitive.</item>
/// </list>
/// <para>Not counted: application threads bound with <see cref="VirtualCpu.BindCurrentThread"/>. The
/// binding does not pin them, and the runtime cannot see when they run or block; work one of them holds
/// back behind a gate is seen as such (cpu/N parks until the release kicks it). Rescuers are not counted
/// either (they move between pools and run only while worker creation fails).</para>
/// <para>A count that is high for a moment only makes an idle CPU park instead of poll, so its next
/// interrupt costs a futex wake; it never loses a wake-up.</para>
/// </remarks>
internal sealed class CoreRunQueue
{
    private PaddedInt32 _nrRunnable; // A: tasks runnable on the core; each task adds and removes only itself
    private readonly VirtualCpu[] _cpus; // I: the virtual CPUs whose threads are pinned to the core
    private readonly bool _repollWhenEmpty; // I: IdlePolicy.Poll: an empty queue sends the parked idle CPUs back to polling

    private CoreRunQueue(int core, VirtualCpu[] cpus, bool repollWhenEmpty)
    {
        Core = core;
        _cpus = cpus;
        _repollWhenEmpty = repollWhenEmpty;
    }

    /// <summary>The OS core.</summary>
    public int Core { get; } // I

    /// <summary>Runnable tasks now (racy, for tests and reports).</summary>
    public int NrRunnable => Volatile.Read(ref _nrRunnable.Value);

    /// <summary>
    /// A task of the core is runnable. PERF: one load of a line that only task transitions write, so an
    /// idle poll may read it at every look.
    /// </summary>
    public bool HasRunnable
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _nrRunnable.Value) > 0;
    }

    /// <summary>
    /// Builds one queue per distinct core of <paramref name="cpus"/> and gives each CPU its core's.
    /// </summary>
    internal static void Attach(VirtualCpu[] cpus, IdlePolicy policy)
    {
        foreach (var group in cpus.GroupBy(c => c.Core))
        {
            var queue = new CoreRunQueue(group.Key, group.ToArray(), policy == IdlePolicy.Poll);
            foreach (var cpu in group)
            {
                cpu.RunQueue = queue;
            }
        }
    }

    /// <summary>
    /// activate_task(): the calling transition made a task runnable on this core. Full barrier: the waker
    /// counts the task before its wake-up (and before it, as cpu/N, idles itself and reads the count).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enqueue() => Interlocked.Increment(ref _nrRunnable.Value);

    /// <summary>
    /// deactivate_task(): a task of this core stopped being runnable. When that empties the queue under
    /// idle=poll, the idle CPUs of the core that parked for the tasks go back to polling, as the kernel
    /// switches to its idle task when the last task sleeps. Full barrier before the look at their idle
    /// state, as cpu/N announces its park before its last look at the count (see VirtualCpu.Idle). For a
    /// caller that holds no lock: the kick wakes cpu/N, which preempts the caller on its own core.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Dequeue()
    {
        if (DequeueDeferred())
        {
            KickIdle();
        }
    }

    /// <summary>
    /// <see cref="Dequeue"/> for a caller that holds a lock (a pool lock): true if it must call
    /// <see cref="RepollIdle"/> once it has let go. Waking cpu/N under the lock would have it preempt the
    /// holder on their shared core, and its next interrupt handler spin on that lock.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool DequeueDeferred()
    {
        int left = Interlocked.Decrement(ref _nrRunnable.Value);
        Debug.Assert(left >= 0, "a task left a core's run queue it was not on");
        return left == 0 && _repollWhenEmpty;
    }

    /// <summary>The deferred half of <see cref="DequeueDeferred"/>: sends the parked idle CPUs back to polling if the queue is still empty.</summary>
    public void RepollIdle()
    {
        if (!HasRunnable)
        {
            KickIdle();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void KickIdle()
    {
        foreach (var cpu in _cpus)
        {
            cpu.Kick();
        }
    }

    public override string ToString() => $"core {Core}: {NrRunnable} runnable";
}
