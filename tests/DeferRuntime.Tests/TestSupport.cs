using System.Diagnostics;
using System.Runtime.ExceptionServices;
using DeferRuntime.Cpus;

[assembly: CollectionBehavior(MaxParallelThreads = 2)]

namespace DeferRuntime.Tests;

/// <summary>Bounded waits: the ceiling only catches hangs; no test passes or fails by timing.</summary>
internal static class Wait
{
    public static readonly TimeSpan Ceiling = TimeSpan.FromSeconds(30);

    public static void Until(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        var spin = new SpinWait();
        while (!condition())
        {
            if (clock.Elapsed > Ceiling)
            {
                throw new TimeoutException($"hang: still waiting, after {Ceiling.TotalSeconds} s, for {what}");
            }
            spin.SpinOnce();
        }
    }

    public static void For(ManualResetEventSlim signal, string what)
    {
        if (!signal.Wait(Ceiling))
        {
            throw new TimeoutException($"hang: {what} never happened within {Ceiling.TotalSeconds} s");
        }
    }
}

internal static class TestRuntime
{
    /// <summary>Boots a runtime for a test; priorities left alone so parallel tests share the machine evenly.</summary>
    public static Runtime Boot(int cpus = 2, Action<RuntimeOptions>? configure = null)
    {
        var options = new RuntimeOptions { CpuCount = cpus, Priorities = PriorityPolicy.None };
        configure?.Invoke(options);
        return Runtime.Boot(options);
    }

    /// <summary>Runs <paramref name="action"/> on CPU <paramref name="cpu"/> in hard-IRQ context and waits for it.</summary>
    public static void OnCpu(this Runtime runtime, int cpu, Action action) => runtime.SmpCallFunctionSingle(cpu, action, wait: true);

    /// <summary>
    /// Runs <paramref name="body"/> on a fresh thread bound to CPU <paramref name="cpu"/> as a task
    /// (kthread_bind) and rethrows what it threw; the binding never leaks into a test runner thread.
    /// </summary>
    public static void Bound(this Runtime runtime, int cpu, Action body) => Guarded.Run(() =>
    {
        using var binding = runtime.Cpus[cpu].BindCurrentThread();
        body();
    }, $"bound/{cpu}");
}

/// <summary>Threads whose exceptions are rethrown on join (dotnet/runtime's threading tests do the same).</summary>
internal sealed class Guarded
{
    private readonly Thread _thread;
    private ExceptionDispatchInfo? _failure;

    public Guarded(Action body, string name)
    {
        _thread = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                _failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        { Name = name, IsBackground = true };
    }

    public static Guarded Start(Action body, string name)
    {
        var g = new Guarded(body, name);
        g._thread.Start();
        return g;
    }

    public static void Run(Action body, string name) => Start(body, name).Join();

    public void Join()
    {
        if (!_thread.Join(Wait.Ceiling))
        {
            throw new TimeoutException($"hang: thread {_thread.Name} did not finish within {Wait.Ceiling.TotalSeconds} s");
        }
        _failure?.Throw();
    }
}

/// <summary>Long stress combinations run only with DEFER_STRESS=1; a short version is always on.</summary>
internal static class Stress
{
    public static bool Long => Environment.GetEnvironmentVariable("DEFER_STRESS") == "1";

    public static int Scale(int shortCount, int longCount) => Long ? longCount : shortCount;
}

/// <summary>Facts about the calling context, captured inside a handler.</summary>
internal sealed record ContextSnapshot(bool InIrq, bool InSoftirq, bool InServingSoftirq, bool InInterrupt, bool InAtomic, bool IrqsDisabled, int CpuId, string? Thread)
{
    public static ContextSnapshot Take() => new(
        CpuContext.InIrq, CpuContext.InSoftirq, CpuContext.InServingSoftirq, CpuContext.InInterrupt,
        CpuContext.InAtomic, CpuContext.IrqsDisabled, CpuContext.CurrentCpuId, System.Threading.Thread.CurrentThread.Name);
}

/// <summary>
/// Tests whose invariant is about who gets a shared resource (fairness) run alone: unrelated tests
/// loading the same cores would deschedule the contenders and measure the machine, not the lock.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAlone
{
    public const string Name = "runs alone";
}
