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

    /// <summary>
    /// One storm test's life: boots the run's runtime, storms it with the test <paramref name="create"/>
    /// makes, shuts the runtime down (what that throws is a problem of the test), stops counting injected
    /// faults, and only then reads the result, so it counts what ran during the shutdown too.
    /// </summary>
    public static TResult Run<TResult>(TortureRun run, Func<TortureRun, Runtime, IStormTest<TResult>> create)
    {
        var runtime = run.Boot();
        IStormTest<TResult>? test = null;
        var problems = new List<string>();
        TimeSpan ran = TimeSpan.Zero;
        try
        {
            test = create(run, runtime);
            ran = test.Torture(problems);
        }
        finally
        {
            Shutdown(runtime, problems);
            test?.Faults.Dispose();
        }
        using (test)
        {
            return test.Result(ran, problems);
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

/// <summary>A test that storms one runtime for <see cref="SuiteSupport.Run"/>: the load, then the result once the runtime is down.</summary>
internal interface IStormTest<out TResult> : IDisposable
{
    /// <summary>The fault injector, disposed once the runtime is down (before the result is read).</summary>
    FaultInjector Faults { get; }

    /// <summary>Runs the load for the test's duration, adding what went wrong to <paramref name="problems"/>; returns how long it ran.</summary>
    TimeSpan Torture(List<string> problems);

    /// <summary>The result, read after the runtime has shut down.</summary>
    TResult Result(TimeSpan ran, List<string> problems);
}
