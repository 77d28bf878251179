using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

public class CompletionAndWaitQueueTests : ValidatedTest
{
    [Fact]
    public void Completion_order_of_complete_and_wait_is_irrelevant()
    {
        var done = new Completion();
        done.Complete();
        Assert.True(done.CompletionDone);
        done.WaitForCompletion(); // completed before: passes at once
        Assert.False(done.CompletionDone);

        var waiter = Guarded.Start(done.WaitForCompletion, "waiter");
        Guarded.Run(done.Complete, "completer");
        waiter.Join();

        done.Complete();
        done.Complete();
        Assert.True(done.TryWaitForCompletion());
        Assert.True(done.TryWaitForCompletion());
        Assert.False(done.TryWaitForCompletion());
    }

    [Fact]
    public void Complete_all_releases_every_waiter_and_later_waits_until_reinit()
    {
        var done = new Completion();
        var waiters = Enumerable.Range(0, 8).Select(i => Guarded.Start(done.WaitForCompletion, $"w{i}")).ToList();
        done.CompleteAll();
        waiters.ForEach(w => w.Join());
        done.WaitForCompletion();
        Assert.True(done.CompletionDone);
        done.Reinit();
        Assert.False(done.CompletionDone);
        Assert.Equal(0, done.WaitForCompletionTimeout(TimeSpan.Zero));
    }

    [Fact]
    public void Completion_waits_return_the_kernel_values()
    {
        var done = new Completion();
        Assert.Equal(0, done.WaitForCompletionTimeout(TimeSpan.FromMilliseconds(10)));
        done.Complete();
        Assert.InRange(done.WaitForCompletionTimeout(TimeSpan.FromSeconds(60)), 1, 60_000);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Equal(Errno.ERESTARTSYS, done.WaitForCompletionInterruptible(cts.Token));
        Assert.Equal(Errno.ERESTARTSYS, done.WaitForCompletionInterruptibleTimeout(TimeSpan.FromSeconds(1), cts.Token));
        Assert.Equal(0, done.WaitForCompletionInterruptibleTimeout(TimeSpan.FromMilliseconds(5), CancellationToken.None));
        done.Complete();
        Assert.Equal(0, done.WaitForCompletionInterruptible(CancellationToken.None));
        Assert.Throws<ArgumentOutOfRangeException>(() => done.WaitForCompletionTimeout(TimeSpan.FromSeconds(-5)));
    }

    [Fact]
    public void Completion_from_hard_irq_context_wakes_a_sleeper()
    {
        using var rt = TestRuntime.Boot(2);
        var done = new Completion();
        var waiter = Guarded.Start(done.WaitForCompletion, "sleeper");
        rt.OnCpu(1, done.Complete);
        waiter.Join();
    }

    [Fact]
    public void Many_completes_wake_exactly_that_many_of_many_waiters()
    {
        var done = new Completion();
        long passed = 0;
        var waiters = Enumerable.Range(0, 6).Select(i => Guarded.Start(() => { done.WaitForCompletion(); Interlocked.Increment(ref passed); }, $"w{i}")).ToList();
        for (int i = 0; i < 6; i++)
        {
            done.Complete();
        }
        waiters.ForEach(w => w.Join());
        Assert.Equal(6, passed);
        Assert.False(done.CompletionDone);
    }

    [Fact]
    public void Wake_up_wakes_every_non_exclusive_and_one_exclusive_waiter()
    {
        var wq = new WaitQueue();
        bool ready = false;
        long returned = 0;
        const int shared = 3, exclusive = 4;
        var waiters = new List<Guarded>();
        for (int i = 0; i < shared + exclusive; i++)
        {
            bool excl = i >= shared;
            waiters.Add(Guarded.Start(() => { wq.WaitEvent(() => Volatile.Read(ref ready), excl); Interlocked.Increment(ref returned); }, $"w{i}"));
        }
        Wait.Until(() => wq.WaiterCount == shared + exclusive, "every waiter to queue");
        Volatile.Write(ref ready, true);
        Assert.Equal(shared + 1, wq.WakeUp());
        Wait.Until(() => Interlocked.Read(ref returned) == shared + 1, "the woken waiters to return");
        Assert.Equal(exclusive - 1, wq.WaiterCount);
        Assert.Equal(1, wq.WakeUpNr(1));
        Wait.Until(() => Interlocked.Read(ref returned) == shared + 2, "one more exclusive waiter");
        Assert.Equal(exclusive - 2, wq.WakeUpNr(0)); // 0: all of them, as the kernel's wake_up_nr
        waiters.ForEach(w => w.Join());
        Assert.Equal(shared + exclusive, Interlocked.Read(ref returned));
    }

    [Fact]
    public void Wait_event_variants_return_the_kernel_values()
    {
        var wq = new WaitQueue();
        bool flag = false;
        Assert.Equal(0, wq.WaitEventTimeout(() => flag, TimeSpan.FromMilliseconds(10)));
        flag = true;
        Assert.InRange(wq.WaitEventTimeout(() => flag, TimeSpan.FromSeconds(10)), 1, 10_000);
        flag = false;
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Equal(Errno.ERESTARTSYS, wq.WaitEventInterruptible(() => flag, cts.Token));
        Assert.Equal(Errno.ERESTARTSYS, wq.WaitEventInterruptibleTimeout(() => flag, TimeSpan.FromSeconds(1), cts.Token));
        Assert.Equal(0, wq.WaitEventInterruptibleTimeout(() => flag, TimeSpan.FromMilliseconds(5), CancellationToken.None));

        int count = 0;
        var consumer = Guarded.Start(() => wq.WaitEvent(() => Volatile.Read(ref count) >= 100), "consumer");
        for (int i = 0; i < 100; i++)
        {
            Interlocked.Increment(ref count);
            wq.WakeUp();
        }
        consumer.Join();
        Assert.Equal(0, wq.WaiterCount);
    }
}
