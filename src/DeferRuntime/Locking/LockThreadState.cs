using System.Runtime.CompilerServices;
using DeferRuntime.Cpus;

namespace DeferRuntime.Locking;

/// <summary>
/// Per-thread lock bookkeeping, for every thread (bound to a CPU or not): the held locks (the kernel's
/// current->held_locks, for might_sleep reports and the validator), how many spinlocks are held, and
/// whether the thread is blocked in a sleeping primitive (what a mutex's optimistic spinner checks).
/// </summary>
/// <remarks>All fields are written by the owning thread only, except <see cref="Blocked"/>, read by others.</remarks>
internal sealed class LockThreadState
{
    private const int MaxHeld = 48; // MAX_LOCK_DEPTH in the kernel

    [ThreadStatic]
    private static LockThreadState? t_current;

    private readonly HeldLock[] _held = new HeldLock[MaxHeld];

    /// <summary>Spinlocks held: atomic context for threads of no CPU (bound threads also get preempt_count).</summary>
    public int SpinDepth;

    /// <summary>True while the thread is blocked in a runtime sleeping primitive (its task is not on a CPU).</summary>
    public volatile bool Blocked;

    public int HeldCount { get; private set; }

    public Thread Thread { get; } = Thread.CurrentThread;

    public static LockThreadState Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => t_current ?? Create();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static LockThreadState Create() => t_current = new LockThreadState();

    public ReadOnlySpan<HeldLock> Held => _held.AsSpan(0, HeldCount);

    /// <summary>Pushes a held lock. PERF: one reference store (one GC write barrier); its name and class are read from the lock when reported.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Push(ILockdepTarget lockObject, bool read = false)
    {
        int n = HeldCount;
        if ((uint)n < MaxHeld)
        {
            _held[n] = new HeldLock(lockObject, read);
        }
        HeldCount = n + 1; // past MaxHeld we keep counting so pops stay balanced; the names are dropped
    }

    /// <summary>Removes <paramref name="lockObject"/> (usually the top); false if this thread does not hold it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Pop(object lockObject)
    {
        int n = HeldCount;
        if (n > 0 && n <= MaxHeld && ReferenceEquals(_held[n - 1].Lock, lockObject))
        {
            _held[n - 1] = default;
            HeldCount = n - 1;
            return true;
        }
        return PopSlow(lockObject);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool PopSlow(object lockObject)
    {
        int n = Math.Min(HeldCount, MaxHeld);
        for (int i = n - 1; i >= 0; i--)
        {
            if (ReferenceEquals(_held[i].Lock, lockObject))
            {
                // Out-of-order release is legal (unlock A while B is held); close the gap.
                Array.Copy(_held, i + 1, _held, i, n - i - 1);
                _held[n - 1] = default;
                HeldCount--;
                return true;
            }
        }
        if (HeldCount > MaxHeld)
        {
            HeldCount--;
            return true;
        }
        return false;
    }

    public string DescribeHeld()
    {
        if (HeldCount == 0)
        {
            return "no locks held";
        }
        var names = new List<string>();
        foreach (var h in Held)
        {
            names.Add(h.Name);
        }
        if (HeldCount > MaxHeld)
        {
            names.Add($"... {HeldCount - MaxHeld} more");
        }
        return $"{HeldCount} lock(s) held: {string.Join(", ", names)}";
    }
}

/// <summary>One entry of a thread's held-lock stack.</summary>
internal readonly record struct HeldLock(ILockdepTarget Lock, bool Read)
{
    public string Name => Lock.LockdepName;

    public LockClass? Class => Lock.LockdepClass;
}

/// <summary>A lock that can sit on a thread's held-lock stack: its lockdep_map's name and class.</summary>
internal interface ILockdepTarget
{
    string LockdepName { get; }

    LockClass? LockdepClass { get; }
}

/// <summary>
/// might_sleep(): the check every sleeping primitive makes before it blocks. Sleeping in hard-IRQ or
/// softirq context, with a spinlock held, or with the CPU's irq or bh gate held is a bug the kernel
/// reports as "BUG: sleeping function called from invalid context"; here it throws, in release builds
/// too, because it is a correctness guarantee (a sleeping cpu/N stops the CPU).
/// </summary>
internal static class MightSleep
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Check(string caller)
    {
        var ctx = ThreadContext.Current;
        if (IsAtomic(ctx))
        {
            Throw(caller, ctx);
        }
    }

    /// <summary>in_atomic() || irqs_disabled(), including spinlocks held by a thread of no CPU: no waiting allowed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsAtomic(ThreadContext? ctx) =>
        (ctx is not null && (ctx.PreemptCount != 0 || ctx.IrqsOff)) || LockThreadState.Current.SpinDepth != 0;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Throw(string caller, ThreadContext? ctx)
    {
        string context = ctx switch
        {
            null => "task context on a thread of no CPU",
            { InHardirq: true } => $"hard-IRQ context on CPU {ctx.Cpu.Id}",
            { InServingSoftirq: true } => $"softirq context on CPU {ctx.Cpu.Id}",
            { InSoftirqOrBhDisabled: true } => $"bottom halves disabled on CPU {ctx.Cpu.Id}",
            _ => $"task context on CPU {ctx.Cpu.Id}",
        };
        bool inAtomic = (ctx?.PreemptCount ?? 0) != 0 || LockThreadState.Current.SpinDepth != 0;
        throw new InvalidOperationException(
            $"BUG: sleeping function called from invalid context: {caller} in thread '{Thread.CurrentThread.Name}': " +
            $"in_atomic(): {(inAtomic ? 1 : 0)}, irqs_disabled(): {(ctx?.IrqsOff == true ? 1 : 0)}, preempt_count: 0x{ctx?.PreemptCount ?? 0:x}, " +
            $"{context}, {LockThreadState.Current.DescribeHeld()}");
    }
}
