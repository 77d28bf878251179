using System.Runtime.CompilerServices;
using DeferRuntime.Platform;

namespace DeferRuntime.Cpus;

/// <summary>
/// The task gate of one CPU: "a task of CPU N is non-preemptible". One CPU runs one task at a time, so
/// while a task of CPU N is inside preempt_disable(), a spinlock, local_bh_disable() or local_irq_save(),
/// no other task of CPU N runs, let alone enters such a section: that is what makes per-CPU data safe
/// under nothing but preempt_disable(). Our tasks of CPU N (ksoftirqd/N, kworkers of N's pools, irq
/// threads affine to N, threads bound with <see cref="VirtualCpu.BindCurrentThread"/>) are separate OS
/// threads, so a task takes this gate when it goes from preemptible to non-preemptible and lets go when
/// it comes back. cpu/N never takes it: hard IRQs and softirqs preempt a preempt-disabled task, as in
/// the kernel.
/// </summary>
/// <remarks>
/// <para>
/// Biased, because the common case is one task entering and leaving sections over and over: the gate
/// remembers the last task that held it (the bias), and that task enters with two plain stores and a
/// load, no atomic operation. A different task takes the bias away (revokes it) with a CAS, a process-wide
/// memory barrier (<see cref="Interlocked.MemoryBarrierProcessWide"/>: membarrier(2) on Linux, ~1.2 µs on
/// the development VM), and a wait until the old holder is out of its section. This is the asymmetric
/// Dekker pattern: the holder's side is "store InTaskSection = 1, then load the bias"; the revoker's is
/// "CAS the bias away, process-wide barrier, then load InTaskSection". The barrier forces the holder's
/// store to be visible (or its load to see the revocation), so either the holder sees it lost the bias
/// and backs off, or the revoker sees it inside and waits. Tasks that take turns would pay that barrier at
/// every turn, so after a revocation the gate is left free at section exits for a while (a CAS to enter,
/// a CAS to leave: <see cref="DropBiasAfterRevocation"/>). The decision and its measurements are in
/// docs/DESIGN.md ("One thing at a time per CPU").
/// </para>
/// <para>
/// A task waiting for the gate waits for another task of its own CPU. With pinning that task shares its
/// core and is not running while we are, so the wait yields almost at once, then naps (the holder may be
/// ksoftirqd at nice 19): correctness never depends on the OS preempting the waiter (DESIGN §5). Waits
/// give up with an exception once the runtime has died (panic, or a shutdown that stopped waiting).
/// </para>
/// </remarks>
internal sealed class TaskGate
{
    // A: null (no bias yet), the ThreadContext holding the bias, or a Revocation in progress (that
    // revoker's preallocated marker). Only a CAS moves it away from a ThreadContext.
    private object? _bias;

    // A: revocations (hand-overs between two tasks), for the design measurements and tests.
    private long _revocations;

    // G (the task inside a section; approximate when a leaving task and the next one race, which is
    // harmless): how many more section exits drop the bias instead of keeping it. Set by a revocation.
    private int _dropBiasExits;

    /// <summary>
    /// Section exits that drop the bias after a revocation. Tasks that keep alternating then enter with a
    /// CAS on a free gate (~7 ns) instead of a revocation each (a process-wide barrier: 1.2 µs on an idle
    /// development VM, 2-30 µs while its other vCPU is busy); a task left alone gets its bias back after
    /// this many exits. 1024 amortizes one barrier to a few ns per section under steady alternation.
    /// </summary>
    internal const int DropBiasAfterRevocation = 1024;

    /// <summary>Times the gate changed hands between two tasks (each one process-wide barrier).</summary>
    public long Revocations => Volatile.Read(ref _revocations);

    /// <summary>The task that may enter without an atomic, if any (racy; for tests and reports).</summary>
    public ThreadContext? BiasHolder => Volatile.Read(ref _bias) as ThreadContext;

    /// <summary>
    /// preempt_disable()'s exclusion: returns once <paramref name="ctx"/> is the only task of this CPU in a
    /// non-preemptible section. PERF: for the bias holder, two plain stores and a load.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter(ThreadContext ctx)
    {
        if (ReferenceEquals(Volatile.Read(ref _bias), ctx))
        {
            // The holder's half of the asymmetric Dekker pair. The JIT keeps volatile accesses in program
            // order; the CPU may still let the load pass the store (x64 store buffer), which is what the
            // revoker's process-wide barrier is for.
            Volatile.Write(ref ctx.InTaskSection, 1);
            if (ReferenceEquals(Volatile.Read(ref _bias), ctx))
            {
                return;
            }
            Volatile.Write(ref ctx.InTaskSection, 0);
        }
        EnterSlow(ctx);
    }

    /// <summary>
    /// preempt_enable()'s side: the section is over. The bias stays with <paramref name="ctx"/>, unless
    /// tasks have been taking turns lately (see <see cref="DropBiasAfterRevocation"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit(ThreadContext ctx)
    {
        Volatile.Write(ref ctx.InTaskSection, 0); // release: the section's writes first
        if (_dropBiasExits > 0)
        {
            DropBias(ctx);
        }
    }

    /// <summary>
    /// Leaves the gate free instead of biased, so the next task of the CPU enters with a CAS, no barrier.
    /// A CAS, not a store: a revoker may have replaced our bias with its marker meanwhile, and wins.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void DropBias(ThreadContext ctx)
    {
        _dropBiasExits--;
        Interlocked.CompareExchange(ref _bias, null, ctx);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterSlow(ThreadContext ctx)
    {
        var wait = new GateWait(ctx);
        while (true)
        {
            object? current = Volatile.Read(ref _bias);
            if (ReferenceEquals(current, ctx))
            {
                Volatile.Write(ref ctx.InTaskSection, 1);
                if (ReferenceEquals(Volatile.Read(ref _bias), ctx))
                {
                    return;
                }
                Volatile.Write(ref ctx.InTaskSection, 0);
            }
            else if (current is null)
            {
                // A free gate: nobody is inside (a holder frees it only after leaving). Announce before
                // the CAS publishes the bias, so a revoker that sees us as holder sees us inside.
                Volatile.Write(ref ctx.InTaskSection, 1);
                if (Interlocked.CompareExchange(ref _bias, ctx, null) is null)
                {
                    return;
                }
                Volatile.Write(ref ctx.InTaskSection, 0);
            }
            else if (current is ThreadContext old)
            {
                if (Interlocked.CompareExchange(ref _bias, ctx.Revocation, old) == old)
                {
                    WaitOutOldHolder(ctx, old);
                    Volatile.Write(ref ctx.InTaskSection, 1);
                    Volatile.Write(ref _bias, ctx);
                    _dropBiasExits = DropBiasAfterRevocation;
                    Interlocked.Increment(ref _revocations);
                    return;
                }
            }
            // Another task is revoking, or just did: wait for it to be done with its section.
            wait.Once("preempt_disable()");
        }
    }

    /// <summary>The revoker's half: after the barrier, the old holder is either seen inside or will see the revocation.</summary>
    private void WaitOutOldHolder(ThreadContext ctx, ThreadContext old)
    {
        Interlocked.MemoryBarrierProcessWide();
        if (Volatile.Read(ref old.InTaskSection) == 0)
        {
            return;
        }
        var wait = new GateWait(ctx);
        while (Volatile.Read(ref old.InTaskSection) != 0)
        {
            try
            {
                wait.Once("preempt_disable()");
            }
            catch
            {
                // The runtime died while we waited: give the bias back so nobody waits for our marker.
                Volatile.Write(ref _bias, old);
                throw;
            }
        }
    }

    /// <summary>A revoker's marker in <see cref="_bias"/>: preallocated per task, so a hand-over allocates nothing.</summary>
    internal sealed class Revocation;
}

/// <summary>
/// How a thread of CPU N waits for something another thread of CPU N holds (a gate): a few short spins
/// (the holder may run on another core when pinning is off), then yields (a same-core holder of equal
/// priority runs), then naps (a lower-priority holder runs). In the nap phase it checks that the runtime
/// is still alive, so no gate wait outlives a panic or a shutdown that gave up waiting.
/// </summary>
internal struct GateWait
{
    private const int SpinRounds = 4;
    private const int YieldRounds = 16;

    private readonly ThreadContext _ctx;
    private int _round;

    public GateWait(ThreadContext ctx)
    {
        _ctx = ctx;
        _round = 0;
    }

    public void Once(string caller)
    {
        if (_round < SpinRounds)
        {
            Thread.SpinWait(16 << _round);
        }
        else if (_round < SpinRounds + YieldRounds)
        {
            Thread.Yield();
        }
        else
        {
            _ctx.Cpu.Runtime.ThrowIfDead(caller);
            ThreadContext.NapInSpinWait();
        }
        _round++;
    }
}
