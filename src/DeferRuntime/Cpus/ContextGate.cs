using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Cpus;

/// <summary>
/// One of a CPU's two context gates: the irq gate ("local interrupts disabled on CPU N") or the bh gate
/// ("softirqs disabled on CPU N"). At most one thread bound to the CPU holds it; nesting is counted by the
/// holder in its own <see cref="ThreadContext"/>, so the gate itself is only an owner word.
/// </summary>
/// <remarks>
/// cpu/N only ever <see cref="TryEnter"/>s: it never waits for a gate held by another thread of its own
/// CPU (DESIGN §5). The holder's release re-checks the pending work and runs it or kicks cpu/N, the
/// same shape as Kestrel's IOQueue: clear the flag, full barrier, re-check.
/// </remarks>
internal sealed class ContextGate
{
    private ThreadContext? _owner; // A: Interlocked; null = free

    public ThreadContext? Owner => Volatile.Read(ref _owner);

    public bool IsHeld => Volatile.Read(ref _owner) is not null;

    /// <summary>Takes the gate if free. Full barrier either way (CompareExchange).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryEnter(ThreadContext context) => Interlocked.CompareExchange(ref _owner, context, null) is null;

    /// <summary>Takes the gate, waiting with <see cref="Backoff"/> while another thread of the CPU holds it.</summary>
    public void Enter(ThreadContext context)
    {
        if (!TryEnter(context))
        {
            EnterSlow(context);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterSlow(ThreadContext context)
    {
        // Published for shutdown's stuck-thread report (see ThreadContext.WaitingForGate).
        Volatile.Write(ref context.WaitingForGate, this);
        try
        {
            // The holder is another thread of this CPU: a task waits here only for cpu/N (tasks hold the
            // task gate before they take this one), cpu/N in a softirq only for nobody (see TaskGate).
            var wait = new GateWait(context);
            do
            {
                wait.Once(ReferenceEquals(this, context.Cpu.IrqGate) ? "local_irq_save()" : "local_bh_disable()");
            }
            while (!TryEnter(context));
        }
        finally
        {
            Volatile.Write(ref context.WaitingForGate, null);
        }
    }

    /// <summary>
    /// Releases the gate, followed by a full barrier so the caller's re-check of pending work cannot be
    /// reordered before the release (the other side sets pending, then fails TryEnter).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit(ThreadContext context)
    {
        Debug.Assert(ReferenceEquals(Volatile.Read(ref _owner), context), "gate released by a thread that does not hold it");
        Interlocked.Exchange(ref _owner, null);
    }
}
