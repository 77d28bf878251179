using System.Runtime.CompilerServices;

namespace DeferRuntime.Softirqs;

/// <summary>
/// softirq_vec[]: one action per vector for the whole runtime, opened once. Shared by every CPU; the
/// per-CPU parts (pending mask, counts) live on <see cref="Cpus.VirtualCpu"/>.
/// </summary>
internal sealed class SoftirqTable
{
    public const int VectorCount = 10;

    /// <summary>MAX_SOFTIRQ_RESTART: how many times __do_softirq re-reads the pending mask.</summary>
    public const int MaxRestart = 10;

    /// <summary>MAX_SOFTIRQ_TIME: the irq-exit budget before ksoftirqd takes over (2 ms in the kernel).</summary>
    public static readonly long MaxSoftirqTicks = System.Diagnostics.Stopwatch.Frequency * 2 / 1000;

    /// <summary>SOFTIRQ_NOW_MASK: vectors irq exit runs even while ksoftirqd is running.</summary>
    public const int NowMask = (1 << (int)SoftirqVector.Hi) | (1 << (int)SoftirqVector.Tasklet);

    /// <summary>The kernel's names, as /proc/softirqs prints them.</summary>
    public static readonly string[] Names = ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"];

    private readonly Action?[] _actions = new Action?[VectorCount]; // I: set once per vector by Open

    /// <summary>open_softirq().</summary>
    public void Open(SoftirqVector vector, Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        int nr = Check(vector);
        if (Interlocked.CompareExchange(ref _actions[nr], action, null) is not null)
        {
            throw new InvalidOperationException($"open_softirq({Names[nr]}): the vector is already open; each softirq vector has exactly one action, set once.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Action? Action(int nr) => _actions[nr];

    /// <summary>Validates a vector for raise: in range and opened.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int CheckRaise(SoftirqVector vector, string caller)
    {
        int nr = (int)vector;
        if ((uint)nr >= VectorCount || _actions[nr] is null)
        {
            ThrowNotOpen(vector, caller);
        }
        return nr;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotOpen(SoftirqVector vector, string caller)
    {
        int nr = (int)vector;
        if ((uint)nr >= VectorCount)
        {
            throw new ArgumentOutOfRangeException(nameof(vector), vector, $"{caller}: there are {VectorCount} softirq vectors (HI..RCU).");
        }
        throw new InvalidOperationException($"{caller}({Names[nr]}): the vector was never opened; call OpenSoftirq({vector}, action) first, as the kernel's open_softirq() at boot.");
    }

    private static int Check(SoftirqVector vector)
    {
        int nr = (int)vector;
        if ((uint)nr >= VectorCount)
        {
            throw new ArgumentOutOfRangeException(nameof(vector), vector, $"there are {VectorCount} softirq vectors (HI..RCU).");
        }
        return nr;
    }
}
