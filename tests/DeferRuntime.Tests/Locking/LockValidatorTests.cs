using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

/// <summary>Each seeded bug class is caught on its first occurrence, before any deadlock can happen.</summary>
public class LockValidatorTests : ValidatedTest
{
    [Fact]
    public void Abba_is_reported_the_first_time_the_inversion_is_possible()
    {
        var v = new LockValidator();
        var a = new KernelMutex("A", v);
        var b = new KernelMutex("B", v);
        // One thread, one after the other: no deadlock can happen, yet the inversion is now possible.
        using (a.Enter())
        using (b.Enter())
        {
        }
        Assert.Empty(v.Reports);
        Guarded.Run(() =>
        {
            using (b.Enter())
            using (a.Enter())
            {
            }
        }, "inverter");
        var report = Assert.Single(v.Reports);
        Assert.Equal("circular locking dependency", report.Kind);
        Assert.Contains("new dependency:      B -> A", report.Message, StringComparison.Ordinal);
        Assert.Contains("existing dependency: A -> B", report.Message, StringComparison.Ordinal);

        // The same inversion again is not reported twice.
        using (b.Enter())
        using (a.Enter())
        {
        }
        Assert.Single(v.Reports);
    }

    [Fact]
    public void A_three_lock_cycle_is_reported_with_its_chain()
    {
        var v = new LockValidator();
        var x = new KernelSpinlock("X", v);
        var y = new KernelSpinlock("Y", v);
        var z = new KernelSpinlock("Z", v);
        using (x.Enter()) using (y.Enter()) { }
        using (y.Enter()) using (z.Enter()) { }
        Assert.Empty(v.Reports);
        using (z.Enter()) using (x.Enter()) { }
        var report = Assert.Single(v.Reports);
        Assert.Equal("circular locking dependency", report.Kind);
        Assert.Contains("X -> Y -> Z", report.Message, StringComparison.Ordinal);
        Assert.Contains("new dependency:      Z -> X", report.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Hardirq_safe_to_unsafe_order_and_inconsistent_usage_are_reported()
    {
        using var rt = TestRuntime.Boot(1);
        var v = new LockValidator();
        var safe = new KernelSpinlock("irq-safe", v);
        var unsafeLock = new KernelSpinlock("irq-unsafe", v);
        rt.OnCpu(0, () => { using var _ = safe.Enter(); }); // taken in hard-IRQ context: hardirq-safe
        Guarded.Run(() => { using var _ = unsafeLock.Enter(); }, "task"); // interrupts on: hardirq-unsafe
        Assert.Empty(v.Reports);
        rt.Bound(0, () =>
        {
            using (safe.EnterIrqSave())
            using (unsafeLock.Enter())
            {
            }
        });
        var order = Assert.Single(v.Reports, r => r.Kind == "hardirq-safe -> hardirq-unsafe lock order");
        Assert.Contains("'irq-safe' is hardirq-safe", order.Message, StringComparison.Ordinal);
        Assert.Contains("'irq-unsafe', which is hardirq-unsafe", order.Message, StringComparison.Ordinal);

        // The kernel bug class behind it: a lock shared with an IRQ handler taken without the irq variant.
        var shared = new KernelSpinlock("shared-with-irq", v);
        rt.OnCpu(0, () => { using var _ = shared.Enter(); });
        rt.Bound(0, () => { using var _ = shared.Enter(); });
        var inconsistent = Assert.Single(v.Reports, r => r.Kind == "inconsistent lock state");
        Assert.Contains("{IN-HARDIRQ-W} -> {HARDIRQ-ON-W}", inconsistent.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Softirq_safe_to_unsafe_order_is_reported()
    {
        using var rt = TestRuntime.Boot(1);
        var v = new LockValidator();
        var inSoftirq = new KernelSpinlock("bh-safe", v);
        var plain = new KernelSpinlock("bh-unsafe", v);
        var t = rt.CreateTasklet(_ => { using var scope = inSoftirq.Enter(); }, "bh-user");
        t.Schedule();
        Wait.Until(() => t.RunCount == 1, "the tasklet");
        Guarded.Run(() => { using var _ = plain.Enter(); }, "task");
        rt.Bound(0, () =>
        {
            using (inSoftirq.EnterBh())
            using (plain.Enter())
            {
            }
        });
        Assert.Contains(v.Reports, r => r.Kind == "softirq-safe -> softirq-unsafe lock order");
    }

    [Fact]
    public void Recursion_is_reported_and_a_certain_self_deadlock_refused()
    {
        var v = new LockValidator();
        var first = new KernelSpinlock("same-class", v);
        var second = new KernelSpinlock("same-class", v);
        using (first.Enter())
        using (second.Enter())
        {
        }
        var nested = Assert.Single(v.Reports);
        Assert.Equal("recursive locking", nested.Kind);

        using (first.Enter())
        {
            var e = Assert.Throws<InvalidOperationException>(first.Lock); // would spin forever on itself
            Assert.Contains("would deadlock on itself", e.Message, StringComparison.Ordinal);
            Assert.True(first.IsLocked);
        }
        Assert.False(first.IsLocked);
        Assert.Contains(v.Reports, r => r.Kind == "recursive locking" && r.Message.Contains("DEADLOCK", StringComparison.Ordinal));
    }

    [Fact]
    public void Bad_unlock_and_a_disposed_held_lock_are_reported()
    {
        var v = new LockValidator();
        var spin = new KernelSpinlock("unbalanced", v);
        Assert.Throws<InvalidOperationException>(spin.Unlock);
        Assert.Single(v.Reports, r => r.Kind == "bad unlock balance");

        var mutex = new KernelMutex("freed", v);
        mutex.Lock();
        mutex.Dispose();
        var freed = Assert.Single(v.Reports, r => r.Kind == "held lock freed");
        Assert.Contains("'freed' was disposed", freed.Message, StringComparison.Ordinal);
        mutex.Unlock();
    }

    [Fact]
    public void Reports_are_announced_through_the_event()
    {
        var v = new LockValidator();
        var seen = new List<LockValidatorReport>();
        v.Reported += (_, r) => seen.Add(r);
        var a = new KernelSpinlock("E1", v);
        var b = new KernelSpinlock("E2", v);
        using (a.Enter()) using (b.Enter()) { }
        using (b.Enter()) using (a.Enter()) { }
        Assert.Equal(v.Reports, seen);
        Assert.StartsWith("WARNING: possible circular locking dependency detected", seen[0].ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Locks_built_while_a_validator_is_off_carry_no_class()
    {
        var off = new LockValidator(enabled: false);
        var a = new KernelSpinlock("off-A", off);
        var b = new KernelSpinlock("off-B", off);
        using (a.Enter()) using (b.Enter()) { }
        using (b.Enter()) using (a.Enter()) { }
        Assert.Empty(off.Reports);
        Assert.False(off.Enabled);
    }
}
