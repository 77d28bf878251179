using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

/// <summary>
/// Completion.WaitForCompletionAsync (issue 16): wait_for_completion()'s counting (one complete() lets one
/// wait through, complete_all() every wait until reinit), shared fairly with sleeping waiters, cancellation
/// that consumes nothing, and the might_sleep() rule at the call. Task waits are bounded by the ceiling only.
/// </summary>
public class CompletionAsyncTests
{
    private static void Done(Task task, string what)
    {
        if (!task.Wait(Wait.Ceiling))
        {
            throw new TimeoutException($"hang: {what} did not complete within {Wait.Ceiling.TotalSeconds} s");
        }
    }

    private static void AllDone(Task[] tasks)
    {
        foreach (var t in tasks)
        {
            Done(t, "one of many awaited waits");
        }
    }

    [Fact]
    public void A_completion_before_the_wait_is_consumed_at_the_call()
    {
        var done = new Completion();
        done.Complete();
        var wait = done.WaitForCompletionAsync();
        Assert.True(wait.IsCompletedSuccessfully);
        Assert.False(done.CompletionDone); // consumed
        Assert.False(done.WaitForCompletionAsync().IsCompleted);
    }

    [Fact]
    public void Each_complete_lets_exactly_one_awaited_wait_through_in_arrival_order()
    {
        var done = new Completion();
        var first = done.WaitForCompletionAsync();
        var second = done.WaitForCompletionAsync();
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);

        done.Complete();
        Done(first, "the first awaited wait");
        Assert.False(second.IsCompleted); // one complete, one wait
        Assert.False(done.CompletionDone); // handed to the waiter, not left over
        done.Complete();
        Done(second, "the second awaited wait");
        Assert.False(done.CompletionDone);
    }

    [Fact]
    public void Sleeping_and_awaited_waiters_share_the_completions_one_each()
    {
        var done = new Completion();
        const int each = 8;
        int sleptThrough = 0;
        var sleepers = Enumerable.Range(0, each).Select(i => Guarded.Start(() =>
        {
            done.WaitForCompletion();
            Interlocked.Increment(ref sleptThrough);
        }, $"sleeper{i}")).ToList();
        var awaited = Enumerable.Range(0, each).Select(_ => done.WaitForCompletionAsync()).ToArray();
        for (int i = 0; i < 2 * each; i++)
        {
            done.Complete();
        }
        foreach (var s in sleepers)
        {
            s.Join();
        }
        AllDone(awaited);
        Assert.Equal(each, Volatile.Read(ref sleptThrough));
        Assert.False(done.CompletionDone); // 16 completions, 16 waits: none left over
    }

    [Fact]
    public void Complete_all_lets_every_present_and_later_wait_through_until_reinit()
    {
        var done = new Completion();
        var waits = Enumerable.Range(0, 10).Select(_ => done.WaitForCompletionAsync()).ToArray();
        done.CompleteAll();
        AllDone(waits);
        Assert.True(done.WaitForCompletionAsync().IsCompletedSuccessfully);
        Assert.True(done.CompletionDone);
        done.Reinit();
        Assert.False(done.WaitForCompletionAsync().IsCompleted);
    }

    [Fact]
    public void A_cancelled_wait_is_Canceled_and_consumes_nothing()
    {
        var done = new Completion();
        using var cts = new CancellationTokenSource();
        var cancelled = done.WaitForCompletionAsync(cts.Token);
        var next = done.WaitForCompletionAsync();
        cts.Cancel();
        Assert.True(cancelled.IsCanceled);
        Assert.False(next.IsCompleted);

        done.Complete();
        Done(next, "the wait behind the cancelled one");
        Assert.False(done.CompletionDone);

        // Alone, cancelled: a later complete() stays for the next wait.
        using var cts2 = new CancellationTokenSource();
        var alone = done.WaitForCompletionAsync(cts2.Token);
        cts2.Cancel();
        Assert.True(alone.IsCanceled);
        done.Complete();
        Assert.True(done.CompletionDone);
        Assert.True(done.WaitForCompletionAsync(new CancellationToken(canceled: true)).IsCompletedSuccessfully); // done wins over a cancelled token
        Assert.True(done.WaitForCompletionAsync(new CancellationToken(canceled: true)).IsCanceled);
    }

    [Fact]
    public void Complete_and_cancel_racing_never_lose_a_completion()
    {
        var done = new Completion();
        int rounds = Stress.Scale(2000, 20000);
        int completedWaits = 0;
        for (int i = 0; i < rounds; i++)
        {
            using var cts = new CancellationTokenSource();
            var wait = done.WaitForCompletionAsync(cts.Token);
            var canceller = Task.Run(cts.Cancel);
            done.Complete();
            Done(canceller, "the canceller");
            try
            {
                Done(wait, "a racing wait");
                completedWaits++;
            }
            catch (AggregateException e) when (e.InnerException is TaskCanceledException)
            {
                // cancelled before the completion was handed over: the completion is left over
                Assert.True(done.TryWaitForCompletion());
            }
            Assert.False(done.CompletionDone); // every completion consumed by exactly one of them
        }
        Assert.True(completedWaits >= 0);
    }

    [Fact]
    public void Waiting_from_atomic_context_is_refused_at_the_call()
    {
        using var rt = TestRuntime.Boot(1);
        var done = new Completion();
        Exception? fromIrq = null;
        rt.OnCpu(0, () => fromIrq = Record.Exception(() => { _ = done.WaitForCompletionAsync(); }));
        var error = Assert.IsType<InvalidOperationException>(fromIrq);
        Assert.Contains("sleeping function called from invalid context", error.Message, StringComparison.Ordinal);
        Assert.Contains("wait_for_completion()", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wait_completed_by_a_work_item_completes_across_shutdown()
    {
        var rt = TestRuntime.Boot(2);
        var gate = new Completion();
        var done = new Completion();
        Assert.True(rt.SystemWq.Queue(new DeferRuntime.Workqueues.WorkStruct(_ =>
        {
            gate.WaitForCompletion();
            done.Complete();
        }, "completer")));
        var wait = done.WaitForCompletionAsync();
        var dispose = Guarded.Start(rt.Dispose, "disposer");
        Wait.Until(() => rt.IsShutDown, "shutdown to begin");
        gate.Complete();
        dispose.Join();
        Done(wait, "an awaited completion across shutdown");
    }
}
