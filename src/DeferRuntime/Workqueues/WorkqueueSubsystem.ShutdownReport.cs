using System.Diagnostics;

namespace DeferRuntime.Workqueues;

// Shutdown's report of the work items that never started (RuntimeShutdownReport.NotStarted).
internal sealed partial class WorkqueueSubsystem
{
    /// <summary>
    /// Adds every work item still linked anywhere (a pool's incoming and work lists, a worker's or
    /// rescuer's scheduled list, a pwq's inactive list) to <paramref name="into"/> as not started. Called
    /// by shutdown after its joins: the threads left behind are inside callbacks and, the runtime's
    /// callbacks being closed, will start none of these. Each pool is read under its lock, unless a thread
    /// left behind holds it past <paramref name="lockUntil"/>, when it is read as it stands.
    /// </summary>
    public void CollectNotStarted(List<RuntimeShutdownItem> into, long lockUntil)
    {
        var seen = new HashSet<WorkStruct>(ReferenceEqualityComparer.Instance);
        var workqueues = SnapshotWorkqueues();
        foreach (var pool in Pools)
        {
            bool locked = pool.TryLockUntil(lockUntil);
            try
            {
                if (locked)
                {
                    pool.SpliceIncoming();
                }
                else
                {
                    AddList(Volatile.Read(ref pool.Queue.Incoming), pool, seen, into);
                }
                AddList(pool.Hot.WorkHead, pool, seen, into);
                foreach (var worker in pool.WorkersUnchecked)
                {
                    AddList(worker.ScheduledHead, pool, seen, into);
                }
                if (pool.BhWorker is { } bh)
                {
                    AddList(bh.ScheduledHead, pool, seen, into);
                }
                foreach (var rescuer in pool.Rescuers.ToArray())
                {
                    AddList(rescuer.ScheduledHead, pool, seen, into);
                }
                foreach (var wq in workqueues)
                {
                    foreach (var pwq in wq.Pwqs)
                    {
                        if (ReferenceEquals(pwq.Pool, pool))
                        {
                            AddList(pwq.InactiveHead, pool, seen, into);
                        }
                    }
                }
            }
            finally
            {
                if (locked)
                {
                    pool.Unlock();
                }
            }
        }
    }

    private static void AddList(WorkStruct? head, WorkerPool pool, HashSet<WorkStruct> seen, List<RuntimeShutdownItem> into)
    {
        // Bounded: read without the lock, a list may be caught mid-update; never loop forever on it.
        for (int n = 0; head is not null && n < 1_000_000; head = head.Next, n++)
        {
            if (seen.Add(head))
            {
                into.Add(ItemOf(head, pool.Cpu?.Id, ShutdownItemState.NotStarted, thread: null));
            }
        }
    }

    /// <summary>A work item as shutdown reports it.</summary>
    internal static RuntimeShutdownItem ItemOf(WorkStruct work, int? cpu, ShutdownItemState state, string? thread)
    {
        Debug.Assert(work is not null);
        return new RuntimeShutdownItem(
            work.Name, work.IsDelayed ? ShutdownItemKind.DelayedWork : ShutdownItemKind.Work, state, cpu,
            Volatile.Read(ref work.Pwq)?.Wq.Name, thread, work);
    }
}
