using System.Diagnostics;
using DeferRuntime.Torture.Harness;

namespace DeferRuntime.Torture.Suites;

/// <summary>Helpers the suites share: bounded waits, an atomic maximum, a reported shutdown.</summary>
internal static class SuiteSupport
{
    /// <summary>
    /// Waits until <paramref name="condition"/> holds; false if <see cref="TortureRun.Ceiling"/> passed
    /// first. The ceiling only catches a hang (a lost run, a stuck item): no verdict depends on timing.
    /// </summary>
    public static bool WaitUntil(Func<bool> condition)
    {
        if (condition())
        {
            return true;
        }
        long deadline = Stopwatch.GetTimestamp() + (long)(TortureRun.Ceiling.TotalSeconds * Stopwatch.Frequency);
        var spin = default(SpinWait);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                return false;
            }
            spin.SpinOnce(); // yields, then sleeps: the runtime's threads need the cores more than we do
        }
        return true;
    }

    /// <summary>Raises <paramref name="target"/> to at least <paramref name="value"/>.</summary>
    public static void AtomicMax(ref long target, long value)
    {
        long seen = Volatile.Read(ref target);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref target, value, seen);
            if (previous == seen)
            {
                return;
            }
            seen = previous;
        }
    }

    /// <summary>Raises <paramref name="target"/> to at least <paramref name="value"/>.</summary>
    public static void AtomicMax(ref int target, int value)
    {
        int seen = Volatile.Read(ref target);
        while (value > seen)
        {
            int previous = Interlocked.CompareExchange(ref target, value, seen);
            if (previous == seen)
            {
                return;
            }
            seen = previous;
        }
    }

    /// <summary>Runtime.Dispose(), with what it throws recorded as a problem of the test rather than thrown.</summary>
    public static void Shutdown(Runtime runtime, List<string> problems)
    {
        try
        {
            runtime.Dispose();
        }
#pragma warning disable CA1031 // a shutdown that fails is part of the report (a hung load thread, work left behind)
        catch (Exception e)
#pragma warning restore CA1031
        {
            problems.Add($"Runtime.Dispose(): {e.GetType().Name}: {e.Message}");
        }
    }
}
