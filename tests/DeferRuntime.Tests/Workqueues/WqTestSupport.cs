using System.Runtime.CompilerServices;
using DeferRuntime.Locking;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Workqueues;

/// <summary>Helpers for workqueue tests: gates the test opens, counters, and waits on internal state.</summary>
internal static class WqTest
{
    /// <summary>Waits until <paramref name="count"/> threads sleep in a flush, cancel or freeze of <paramref name="rt"/>.</summary>
    public static void UntilWaiters(Runtime rt, int count, string what) =>
        Wait.Until(() => rt.Wq.WaiterCount >= count, what);

    /// <summary>An item that counts its runs and then blocks on <paramref name="gate"/> (a runtime primitive, so the pool sees it sleep).</summary>
    public static WorkStruct Blocker(Completion gate, StrongBox<int> started, string name) =>
        new(_ =>
        {
            Interlocked.Increment(ref started.Value);
            gate.WaitForCompletion();
        }, name);
}

/// <summary>Counts how many callers are inside at once and remembers the worst.</summary>
internal sealed class OverlapMeter
{
    private int _inside;
    private int _max;

    public int Max => Volatile.Read(ref _max);

    public int Inside => Volatile.Read(ref _inside);

    public void Enter()
    {
        int now = Interlocked.Increment(ref _inside);
        int seen = Volatile.Read(ref _max);
        while (now > seen)
        {
            int prev = Interlocked.CompareExchange(ref _max, now, seen);
            if (prev == seen)
            {
                break;
            }
            seen = prev;
        }
    }

    public void Exit() => Interlocked.Decrement(ref _inside);
}
