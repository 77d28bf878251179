using DeferRuntime.Diagnostics;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Tests.Interrupts;

/// <summary>request_irq()/free_irq() validation and the action chain.</summary>
public class IrqRequestTests
{
    private static IrqReturn Handled(int irq, object? dev) => IrqReturn.Handled;

    [Fact]
    public void Shared_line_runs_every_action_in_request_order_and_counts_chains_nobody_handled()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        var order = new List<string>();
        var answers = new Dictionary<string, IrqReturn> { ["a"] = IrqReturn.None, ["b"] = IrqReturn.Handled, ["c"] = IrqReturn.None };
        IrqHandler Record(string name) => (_, _) =>
        {
            lock (order)
            {
                order.Add(name);
            }
            return answers[name];
        };
        using var a = irqs.RequestIrq(irq, Record("a"), IrqFlags.Shared, "a", new object());
        using var b = irqs.RequestIrq(irq, Record("b"), IrqFlags.Shared, "b", new object());
        using var c = irqs.RequestIrq(irq, Record("c"), IrqFlags.Shared, "c", new object());

        irqs.AssertEdge(irq);
        Wait.Until(() => irqs.GetStats(irq).Runs == 1, "the first chain run");
        answers["b"] = IrqReturn.None;
        irqs.AssertEdge(irq);
        Wait.Until(() => irqs.GetStats(irq).Runs == 2, "the second chain run");

        lock (order)
        {
            Assert.Equal(["a", "b", "c", "a", "b", "c"], order);
        }
        var stats = irqs.GetStats(irq);
        Assert.Equal(["a", "b", "c"], stats.Actions);
        Assert.Equal(1, stats.Unhandled); // only the second chain: nobody returned IRQ_HANDLED
        string proc = irqs.RenderInterrupts();
        Assert.Contains("a, b, c", proc, StringComparison.Ordinal);
        Assert.Contains("Local timer interrupts", proc, StringComparison.Ordinal);
        Assert.Contains("Function call interrupts", proc, StringComparison.Ordinal);
    }

    [Fact]
    public void A_line_taken_without_Shared_is_refused_naming_the_owner()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        using var eth0 = irqs.RequestIrq(irq, Handled, IrqFlags.None, "eth0", new object());

        var plain = Assert.Throws<InvalidOperationException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.None, "eth1", new object()));
        Assert.Contains($"IRQ {irq} is already requested by 'eth0' without IrqFlags.Shared", plain.Message, StringComparison.Ordinal);
        var shared = Assert.Throws<InvalidOperationException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.Shared, "eth1", new object()));
        Assert.Contains("'eth0' without IrqFlags.Shared", shared.Message, StringComparison.Ordinal);

        // The refusals left the owner alone.
        irqs.AssertEdge(irq);
        Wait.Until(() => irqs.GetStats(irq).Runs == 1, "eth0's handler");
        Assert.Equal(["eth0"], irqs.GetStats(irq).Actions);
    }

    [Fact]
    public void Sharers_must_all_say_Shared_and_agree_on_trigger_and_OneShot_with_unique_cookies()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        var cookie = new object();
        using var owner = irqs.RequestThreadedIrq(irq, Handled, (_, _) => IrqReturn.Handled, IrqFlags.Shared | IrqFlags.TriggerRising, "owner", cookie);

        var notShared = Assert.Throws<InvalidOperationException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.None, "late", new object()));
        Assert.Contains("'late' must also pass IrqFlags.Shared", notShared.Message, StringComparison.Ordinal);

        var level = Assert.Throws<InvalidOperationException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.Shared | IrqFlags.TriggerHigh, "lvl", new object()));
        Assert.Contains("flags mismatch", level.Message, StringComparison.Ordinal);
        Assert.Contains("level trigger, 'owner' has it edge", level.Message, StringComparison.Ordinal);

        var oneshot = Assert.Throws<InvalidOperationException>(() => irqs.RequestThreadedIrq(irq, null, (_, _) => IrqReturn.Handled, IrqFlags.Shared | IrqFlags.OneShot, "os", new object()));
        Assert.Contains("IrqFlags.OneShot", oneshot.Message, StringComparison.Ordinal);

        var sameCookie = Assert.Throws<InvalidOperationException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.Shared, "twin", cookie));
        Assert.Contains("dev cookie of 'twin' is already used by 'owner'", sameCookie.Message, StringComparison.Ordinal);

        var nullCookie = Assert.Throws<ArgumentException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.Shared, "anon", null));
        Assert.Contains("unique non-null dev cookie", nullCookie.Message, StringComparison.Ordinal);

        // A sharer that follows the rules gets in.
        using var good = irqs.RequestIrq(irq, Handled, IrqFlags.Shared | IrqFlags.TriggerFalling, "good", new object());
        Assert.Equal(["owner", "good"], irqs.GetStats(irq).Actions);
    }

    [Fact]
    public void Threaded_without_primary_handler_needs_OneShot_and_some_handler_is_required()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();

        var noOneShot = Assert.Throws<ArgumentException>(() => irqs.RequestThreadedIrq(irq, null, (_, _) => IrqReturn.Handled, IrqFlags.None, "t"));
        Assert.Contains("without IrqFlags.OneShot", noOneShot.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => irqs.RequestThreadedIrq(irq, null, null, IrqFlags.OneShot, "none"));
        Assert.Throws<ArgumentException>(() => irqs.RequestIrq(irq, Handled, IrqFlags.TriggerRising | IrqFlags.TriggerHigh, "both"));
        Assert.Throws<ArgumentOutOfRangeException>(() => irqs.RequestIrq(irqs.LineCount, Handled, IrqFlags.None, "nowhere"));
        Assert.Empty(irqs.GetStats(irq).Actions);

        // With OneShot it is fine, and the default primary handler wakes the thread.
        int runs = 0;
        using var t = irqs.RequestThreadedIrq(irq, null, (_, _) =>
        {
            Interlocked.Increment(ref runs);
            return IrqReturn.Handled;
        }, IrqFlags.OneShot, "t");
        irqs.AssertEdge(irq);
        Wait.Until(() => Volatile.Read(ref runs) == 1, "the thread function");
    }

    [Fact]
    public void Request_and_free_refuse_atomic_context()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        var action = irqs.RequestIrq(irq, Handled, IrqFlags.None, "x");
        Exception? request = null, free = null;
        runtime.OnCpu(0, () =>
        {
            request = Record.Exception(() => irqs.RequestIrq(irq + 1, Handled, IrqFlags.None, "y"));
            free = Record.Exception(action.Dispose);
        });
        Assert.Contains("sleeping function called from invalid context", Assert.IsType<InvalidOperationException>(request).Message, StringComparison.Ordinal);
        Assert.Contains("sleeping function called from invalid context", Assert.IsType<InvalidOperationException>(free).Message, StringComparison.Ordinal);
        Assert.False(action.IsFreed);
        action.Dispose();
        action.Dispose(); // harmless twice
        Assert.True(action.IsFreed);
        Assert.Throws<InvalidOperationException>(() => irqs.FreeIrq(irq, null));
    }

    [Fact]
    public void Free_by_cookie_removes_only_that_sharer_and_the_last_free_shuts_the_line_down()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        var devA = new object();
        var devB = new object();
        int aRuns = 0, bRuns = 0;
        irqs.RequestIrq(irq, (_, _) => { Interlocked.Increment(ref aRuns); return IrqReturn.Handled; }, IrqFlags.Shared, "a", devA);
        irqs.RequestIrq(irq, (_, _) => { Interlocked.Increment(ref bRuns); return IrqReturn.Handled; }, IrqFlags.Shared, "b", devB);

        irqs.FreeIrq(irq, devA);
        irqs.AssertEdge(irq);
        Wait.Until(() => Volatile.Read(ref bRuns) == 1, "b alone");
        Assert.Equal(0, Volatile.Read(ref aRuns));

        irqs.FreeIrq(irq, devB);
        var stats = irqs.GetStats(irq);
        Assert.Equal(1, stats.Depth);
        Assert.True(stats.Masked);

        // An edge on the dead line is latched, not lost: the next request gets it.
        Assert.Equal(IrqAssertResult.Latched, irqs.AssertEdge(irq));
        int cRuns = 0;
        using var c = irqs.RequestIrq(irq, (_, _) => { Interlocked.Increment(ref cRuns); return IrqReturn.Handled; }, IrqFlags.None, "c");
        Wait.Until(() => Volatile.Read(ref cRuns) == 1, "the latched edge delivered at startup");
    }

    [Fact]
    public void A_throwing_handler_is_reported_and_the_line_keeps_being_serviced()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        int runs = 0;
        using var action = irqs.RequestIrq(irq, (_, _) =>
        {
            if (Interlocked.Increment(ref runs) == 1)
            {
                throw new InvalidOperationException("driver bug");
            }
            return IrqReturn.Handled;
        }, IrqFlags.None, "buggy");

        irqs.AssertEdge(irq);
        Wait.Until(() => runtime.Faults.Count == 1, "the oops report");
        irqs.AssertEdge(irq);
        Wait.Until(() => Volatile.Read(ref runs) == 2, "the second interrupt");
        var fault = Assert.Single(runtime.Faults.Recent);
        Assert.Contains("'buggy'", fault.Source, StringComparison.Ordinal);
        Assert.Equal(0, irqs.GetStats(irq).Unhandled);
    }

    [Fact]
    public void WakeThread_without_a_thread_function_is_reported_not_crashed_on()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        int runs = 0;
        using var action = irqs.RequestIrq(irq, (_, _) =>
        {
            Interlocked.Increment(ref runs);
            return IrqReturn.WakeThread;
        }, IrqFlags.None, "confused");
        irqs.AssertEdge(irq);
        Wait.Until(() => runtime.Faults.Count == 1, "the warning");
        var warning = Assert.Single(runtime.Faults.Recent);
        Assert.IsType<KernelWarningException>(warning.Exception);
        Assert.Contains("no thread function", warning.Exception.Message, StringComparison.Ordinal);
        irqs.AssertEdge(irq);
        Wait.Until(() => Volatile.Read(ref runs) == 2, "the line still serviced");
    }

    [Fact]
    public void Handlers_run_in_hardirq_context_and_thread_functions_in_task_context_that_may_sleep()
    {
        using var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        ContextSnapshot? primary = null, thread = null;
        using var done = new ManualResetEventSlim();
        var mutex = new DeferRuntime.Locking.KernelMutex();
        using var action = irqs.RequestThreadedIrq(irq, (_, _) =>
        {
            primary = ContextSnapshot.Take();
            return IrqReturn.WakeThread;
        }, (_, _) =>
        {
            thread = ContextSnapshot.Take();
            mutex.Lock(); // sleeping is allowed here
            mutex.Unlock();
            done.Set();
            return IrqReturn.Handled;
        }, IrqFlags.None, "ctx");
        irqs.AssertEdge(irq);
        Wait.For(done, "the thread function");

        Assert.True(primary!.InIrq);
        Assert.True(primary.IrqsDisabled);
        Assert.StartsWith("cpu/", primary.Thread, StringComparison.Ordinal);
        Assert.False(thread!.InInterrupt);
        Assert.False(thread.InAtomic);
        Assert.Equal($"irq/{irq}-ctx", thread.Thread);
    }

    [Fact]
    public void Shutdown_frees_lines_left_requested_and_later_assertions_fail_clearly()
    {
        var runtime = TestRuntime.Boot();
        var irqs = runtime.Irqs;
        int irq = irqs.AllocateIrq();
        int threadRuns = 0;
        var action = irqs.RequestThreadedIrq(irq, null, (_, _) =>
        {
            Interlocked.Increment(ref threadRuns);
            return IrqReturn.Handled;
        }, IrqFlags.OneShot, "leaked");
        irqs.AssertEdge(irq);
        runtime.Dispose();

        Assert.True(action.IsFreed);
        Assert.Equal(1, Volatile.Read(ref threadRuns)); // accepted before shutdown: run, not lost
        Assert.Throws<ObjectDisposedException>(() => irqs.AssertEdge(irq));
        action.Dispose(); // harmless after shutdown
    }
}
