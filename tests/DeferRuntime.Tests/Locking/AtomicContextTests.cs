using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

public class AtomicContextTests : ValidatedTest
{
    private static readonly KernelMutex Mutex = new("test.atomic.mutex");
    private static readonly Completion Done = new();
    private static readonly WaitQueue Queue = new();
    private static readonly KernelSemaphore Semaphore = new(0);
    private static readonly RwSemaphore Rw = new("test.atomic.rwsem");

    /// <summary>Every sleeping call, each of which must be refused in atomic context.</summary>
    private static readonly (string Name, Action Call)[] Sleepers =
    [
        ("mutex_lock()", Mutex.Lock),
        ("mutex_lock_interruptible()", () => Mutex.LockInterruptible(CancellationToken.None)),
        ("wait_for_completion()", Done.WaitForCompletion),
        ("wait_for_completion_timeout()", () => Done.WaitForCompletionTimeout(TimeSpan.FromSeconds(1))),
        ("wait_event()", () => Queue.WaitEvent(() => false)),
        ("down()", Semaphore.Down),
        ("down_timeout()", () => Semaphore.DownTimeout(TimeSpan.FromSeconds(1))),
        ("down_read()", Rw.DownRead),
        ("down_write()", Rw.DownWrite),
        ("msleep()", () => Delay.Msleep(1)),
    ];

    private static void AssertAllRefused(string context)
    {
        foreach (var (name, call) in Sleepers)
        {
            var e = Assert.Throws<InvalidOperationException>(call);
            Assert.Contains("sleeping function called from invalid context", e.Message, StringComparison.Ordinal);
            Assert.Contains(name, e.Message, StringComparison.Ordinal);
            Assert.Contains(context, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Refused_in_hard_irq_context()
    {
        using var rt = TestRuntime.Boot(1);
        rt.OnCpu(0, () => AssertAllRefused("hard-IRQ context on CPU 0"));
    }

    [Fact]
    public void Refused_in_softirq_context()
    {
        using var rt = TestRuntime.Boot(1);
        Exception? failure = null;
        var t = rt.CreateTasklet(_ => failure = Record.Exception(() => AssertAllRefused("softirq context on CPU 0")), "atomic");
        t.Schedule();
        Wait.Until(() => t.RunCount == 1, "the tasklet");
        Assert.Null(failure);
    }

    [Fact]
    public void Refused_with_a_spinlock_held_even_on_a_thread_of_no_cpu()
    {
        var spin = new KernelSpinlock("test.atomic.spin");
        using (spin.Enter())
        {
            AssertAllRefused("1 lock(s) held: test.atomic.spin");
        }
        Guarded.Run(() => { Done.Complete(); Done.WaitForCompletion(); }, "outside: allowed");
    }

    [Fact]
    public void Refused_with_interrupts_or_bottom_halves_disabled()
    {
        using var rt = TestRuntime.Boot(1);
        rt.Bound(0, () =>
        {
            using (CpuContext.LocalIrqSave())
            {
                AssertAllRefused("irqs_disabled(): 1");
            }
            using (CpuContext.LocalBhDisable())
            {
                AssertAllRefused("bottom halves disabled on CPU 0");
            }
            CpuContext.PreemptDisable();
            AssertAllRefused("in_atomic(): 1");
            CpuContext.PreemptEnable();
        });
    }

    [Fact]
    public void Busy_waits_are_allowed_in_atomic_context()
    {
        using var rt = TestRuntime.Boot(1);
        rt.OnCpu(0, () => { Delay.Udelay(10); Done.Complete(); Assert.True(Done.TryWaitForCompletion()); });
    }

    private sealed class CountingNotifier : ISleepNotifier
    {
        public int Sleeping;
        public int Running;

        void ISleepNotifier.Sleeping() => Sleeping++;

        void ISleepNotifier.Running() => Running++;
    }

    [Fact]
    public void Every_sleeping_path_tells_the_worker_pool()
    {
        using var rt = TestRuntime.Boot(1);
        var notifier = new CountingNotifier();
        var done = new Completion();
        var wq = new WaitQueue();
        var sem = new KernelSemaphore(0);
        var mutex = new KernelMutex("test.atomic.notify");
        bool flag = false;
        rt.Bound(0, () =>
        {
            ThreadContext.Current!.SleepNotifier = notifier;
            var helper = Guarded.Start(() =>
            {
                using (mutex.Enter())
                {
                    Wait.Until(() => notifier.Sleeping >= 1, "the mutex waiter to sleep");
                }
                Wait.Until(() => notifier.Sleeping >= 2, "the completion waiter to sleep");
                done.Complete();
                Wait.Until(() => notifier.Sleeping >= 3, "the wait-queue waiter to sleep");
                Volatile.Write(ref flag, true);
                wq.WakeUp();
                Wait.Until(() => notifier.Sleeping >= 4, "the semaphore waiter to sleep");
                sem.Up();
            }, "helper");
            Wait.Until(() => mutex.IsLocked, "the helper to take the mutex");
            mutex.Lock();
            mutex.Unlock();
            done.WaitForCompletion();
            wq.WaitEvent(() => Volatile.Read(ref flag));
            sem.Down();
            Delay.Msleep(1);
            helper.Join();
            ThreadContext.Current!.SleepNotifier = null;
        });
        Assert.True(notifier.Sleeping >= 5, $"sleeping hook calls: {notifier.Sleeping}");
        Assert.Equal(notifier.Sleeping, notifier.Running);
    }
}
