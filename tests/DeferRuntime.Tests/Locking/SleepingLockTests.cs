using DeferRuntime.Locking;

namespace DeferRuntime.Tests.Locking;

public class SleepingLockTests : ValidatedTest
{
    [Fact]
    public void Mutex_excludes_under_hammering()
    {
        var mutex = new KernelMutex("test.mutex.hammer");
        int inside = 0, violations = 0;
        long total = 0;
        int per = Stress.Scale(30_000, 600_000);
        var threads = Enumerable.Range(0, 4).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < per; n++)
            {
                using var _ = mutex.Enter();
                if (Interlocked.Increment(ref inside) != 1)
                {
                    Interlocked.Increment(ref violations);
                }
                total++;
                if ((n & 255) == 0)
                {
                    Thread.Yield(); // let the others queue up and sleep now and then
                }
                Interlocked.Decrement(ref inside);
            }
        }, $"mutex/{i}")).ToList();
        threads.ForEach(t => t.Join());
        Assert.Equal(0, violations);
        Assert.Equal(4L * per, total);
        Assert.False(mutex.IsLocked);
    }

    [Fact]
    public void Mutex_owner_rules()
    {
        var misuse = new LockValidator(); // deliberate misuse: kept out of the suite-wide default validator
        var mutex = new KernelMutex("test.mutex.rules", misuse);
        Assert.Contains("not locked", Assert.Throws<InvalidOperationException>(mutex.Unlock).Message, StringComparison.Ordinal);
        mutex.Lock();
        Assert.True(mutex.IsLocked);
        Assert.True(mutex.IsOwnedByCurrentThread);
        Assert.Contains("not recursive", Assert.Throws<InvalidOperationException>(mutex.Lock).Message, StringComparison.Ordinal);
        Guarded.Run(() =>
        {
            Assert.False(mutex.TryLock());
            var e = Assert.Throws<InvalidOperationException>(mutex.Unlock);
            Assert.Contains("only the owner may unlock", e.Message, StringComparison.Ordinal);
        }, "intruder");
        mutex.Unlock();
        Assert.False(mutex.IsLocked);
        Assert.True(mutex.TryLock());
        mutex.Unlock();
        Assert.Contains(misuse.Reports, r => r.Kind == "recursive locking");
        Assert.Contains(misuse.Reports, r => r.Kind == "bad unlock balance");
    }

    [Fact]
    public void Mutex_lock_interruptible_returns_eintr_when_cancelled_and_the_mutex_stays_consistent()
    {
        var mutex = new KernelMutex("test.mutex.interruptible");
        using var cts = new CancellationTokenSource();
        mutex.Lock();
        int result = 1;
        var waiter = Guarded.Start(() => result = mutex.LockInterruptible(cts.Token), "waiter");
        Wait.Until(() => IsWaiting(mutex), "the waiter to queue");
        cts.Cancel();
        waiter.Join();
        Assert.Equal(Errno.EINTR, result);
        mutex.Unlock();
        Guarded.Run(() => { Assert.Equal(0, mutex.LockInterruptible(CancellationToken.None)); mutex.Unlock(); }, "after");
    }

    [Fact]
    public void Mutex_sleepers_are_served_in_fifo_order()
    {
        var mutex = new KernelMutex("test.mutex.fifo");
        var order = new List<int>();
        mutex.Lock();
        var waiters = new List<Guarded>();
        for (int i = 0; i < 4; i++)
        {
            int id = i;
            waiters.Add(Guarded.Start(() => { mutex.Lock(); lock (order) { order.Add(id); } mutex.Unlock(); }, $"w{id}"));
            Wait.Until(() => WaiterCount(mutex) == id + 1, "the waiter to queue in order");
        }
        mutex.Unlock();
        waiters.ForEach(w => w.Join());
        Assert.Equal([0, 1, 2, 3], order);
    }

    private static int WaiterCount(KernelMutex mutex) =>
        (int)typeof(KernelMutex).GetField("_waiterCount", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(mutex)!;

    private static bool IsWaiting(KernelMutex mutex) => WaiterCount(mutex) > 0;

    [Fact]
    public void Semaphore_counts_and_hands_over_in_order()
    {
        var sem = new KernelSemaphore(2);
        sem.Down();
        Assert.True(sem.DownTrylock());
        Assert.False(sem.DownTrylock());
        Assert.Equal(Errno.ETIME, sem.DownTimeout(TimeSpan.FromMilliseconds(20)));
        using var cts = new CancellationTokenSource();
        int interrupted = 1;
        var w = Guarded.Start(() => interrupted = sem.DownInterruptible(cts.Token), "sem-waiter");
        cts.CancelAfter(10);
        w.Join();
        Assert.Equal(Errno.EINTR, interrupted);
        var got = Guarded.Start(sem.Down, "sem-taker");
        sem.Up(); // handed straight to the sleeper: the count stays 0
        got.Join();
        Assert.Equal(0, sem.Count);
        sem.Up();
        sem.Up();
        Assert.Equal(2, sem.Count);
    }

    [Fact]
    public void Semaphore_of_one_excludes_under_hammering()
    {
        var sem = new KernelSemaphore(1);
        int inside = 0, violations = 0;
        int per = Stress.Scale(20_000, 400_000);
        var threads = Enumerable.Range(0, 3).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < per; n++)
            {
                sem.Down();
                if (Interlocked.Increment(ref inside) != 1)
                {
                    Interlocked.Increment(ref violations);
                }
                Interlocked.Decrement(ref inside);
                sem.Up();
            }
        }, $"sem/{i}")).ToList();
        threads.ForEach(t => t.Join());
        Assert.Equal(0, violations);
        Assert.Equal(1, sem.Count);
    }

    [Fact]
    public void RwSemaphore_readers_share_writers_exclude_and_a_waiting_writer_blocks_new_readers()
    {
        var rw = new RwSemaphore("test.rwsem");
        int readers = 0, writers = 0, violations = 0, maxReaders = 0;
        int per = Stress.Scale(5_000, 100_000);
        var threads = Enumerable.Range(0, 4).Select(i => Guarded.Start(() =>
        {
            for (int n = 0; n < per; n++)
            {
                if (i == 0 || n % 8 == 0)
                {
                    rw.DownWrite();
                    if (Interlocked.Increment(ref writers) != 1 || Volatile.Read(ref readers) != 0)
                    {
                        Interlocked.Increment(ref violations);
                    }
                    Interlocked.Decrement(ref writers);
                    rw.UpWrite();
                }
                else
                {
                    rw.DownRead();
                    int r = Interlocked.Increment(ref readers);
                    if (Volatile.Read(ref writers) != 0)
                    {
                        Interlocked.Increment(ref violations);
                    }
                    int seen;
                    while ((seen = Volatile.Read(ref maxReaders)) < r && Interlocked.CompareExchange(ref maxReaders, r, seen) != seen)
                    {
                    }
                    Interlocked.Decrement(ref readers);
                    rw.UpRead();
                }
            }
        }, $"rw/{i}")).ToList();
        threads.ForEach(t => t.Join());
        Assert.Equal(0, violations);
        Assert.False(rw.IsLocked);

        // Writer preference: once a writer waits, a new reader queues behind it.
        rw.DownRead();
        var writer = Guarded.Start(() => { rw.DownWrite(); rw.UpWrite(); }, "writer");
        Wait.Until(() =>
        {
            if (rw.TryDownRead())
            {
                rw.UpRead(); // the writer is not queued yet: give the probe's read hold back
                return false;
            }
            return true;
        }, "the writer to queue (try-read refused)");
        rw.UpRead();
        writer.Join();
        Assert.True(rw.TryDownWrite());
        rw.DowngradeWrite();
        Assert.Equal(1, rw.ReaderCount);
        Assert.True(rw.TryDownRead());
        rw.UpRead();
        rw.UpRead();
        Assert.Throws<InvalidOperationException>(rw.UpWrite);
    }
}
