using System.Diagnostics;
using System.Runtime.CompilerServices;
using DeferRuntime.Diagnostics;

namespace DeferRuntime.Workqueues;

/// <summary>
/// struct pool_workqueue: the link between one workqueue and one pool. It carries what belongs to the
/// workqueue on that pool: the flush-color in-flight counts, the max_active budget and the inactive list
/// (items over budget, or frozen), and the rescuer's mayday link.
/// </summary>
/// <remarks>
/// Field legend: <c>I:</c> set at creation; <c>L:</c> under <see cref="Pool"/>'s lock; <c>M:</c> under
/// the subsystem's mayday lock (wq_mayday_lock). In-flight counts are also read lock-free by flushers:
/// a retired color's count only goes down, and a color is reused only after it has been flushed.
/// </remarks>
internal sealed class PoolWorkqueue
{
    /// <summary>WORK_NR_COLORS: the flush-color ring. One color is always the current one, so at most 15 flushes are outstanding.</summary>
    public const int WorkColors = 16;

    public PoolWorkqueue(Workqueue wq, WorkerPool pool, int maxActive, int workColor, bool frozen)
    {
        Wq = wq;
        Pool = pool;
        MaxActive = maxActive;
        WorkColor = workColor;
        Frozen = frozen;
    }

    public Workqueue Wq { get; } // I
    public WorkerPool Pool { get; } // I

    public readonly int[] InFlight = new int[WorkColors]; // L: queued, not finished, per color (inactive included)
    public int NrActive; // L: active items (on the worklist or running)
    public int MaxActive; // L
    public bool Frozen; // L: freezing: new items stay inactive
    public int WorkColor; // L: the color new items get
    public WorkStruct? InactiveHead, InactiveTail; // L: FIFO of items waiting for a max_active slot
    public PoolWorkqueue? MaydayNext; // M
    public long Queued; // L: items linked on this pwq (queue_work() that was accepted), for metrics
    public long Executed; // L: items whose function returned, for metrics
    public bool OnMayday; // M

    /// <summary>The max_active that applies now: 0 while frozen.</summary>
    public int EffectiveMaxActive => Frozen ? 0 : MaxActive;

    /// <summary>Queued and not finished, every color.</summary>
    public int InFlightTotal
    {
        get
        {
            int sum = 0;
            for (int i = 0; i < WorkColors; i++)
            {
                sum += Volatile.Read(ref InFlight[i]);
            }
            return sum;
        }
    }

    /// <summary>
    /// The accounting half of __queue_work(): tags the item with the current color, then links it on
    /// the worklist if a max_active slot is free and nobody waits before it, else on the inactive list.
    /// Returns true if it went to the worklist.
    /// </summary>
    public bool Insert(WorkStruct work)
    {
        Pool.AssertLocked();
        if (!ReferenceEquals(work.Pwq, this))
        {
            work.Pwq = this;
        }
        work.Color = WorkColor;
        InFlight[WorkColor]++;
        Queued++;
        if (InactiveHead is null && NrActive < EffectiveMaxActive)
        {
            NrActive++;
            Pool.LinkWorklist(work);
            TraceActivate(work);
            return true;
        }
        WorkerPool.Append(work, ref InactiveHead, ref InactiveTail);
        work.ListKind = WorkListKind.Inactive;
        work.QueuedPool = Pool;
        return false;
    }

    /// <summary>
    /// pwq_dec_nr_in_flight(): an item of <paramref name="color"/> finished or was stolen; if it held a
    /// max_active slot, the oldest inactive item takes it.
    /// </summary>
    public void DecInFlight(int color, bool active)
    {
        Pool.AssertLocked();
        Debug.Assert(InFlight[color] > 0, "in-flight count underflow");
        InFlight[color]--;
        if (active)
        {
            NrActive--;
            ActivateInactive();
        }
    }

    /// <summary>
    /// pwq_adjust_max_active(): applies a new max_active and freeze state under the pool lock; items
    /// queued without the lock are spliced first (they were queued before the change), inactive items
    /// start if the new limits let them, and the pool is kicked for them.
    /// </summary>
    public void ApplyLimits(int maxActive, bool frozen)
    {
        Pool.Lock();
        Pool.SpliceIncoming();
        MaxActive = maxActive;
        Frozen = frozen;
        ActivateInactive();
        var toWake = Pool.KickPool();
        Pool.Unlock();
        WorkerPool.WakeKicked(toWake);
    }

    /// <summary>pwq_activate_first_inactive(), while slots are free: oldest first, so order is kept.</summary>
    public void ActivateInactive()
    {
        Pool.AssertLocked();
        while (InactiveHead is { } work && NrActive < EffectiveMaxActive)
        {
            WorkerPool.Unlink(work, ref InactiveHead, ref InactiveTail);
            NrActive++;
            Pool.LinkWorklist(work);
            TraceActivate(work);
        }
    }

    /// <summary>
    /// trace_workqueue_activate_work(): under the pool lock, as in the kernel (see DeferRuntimeEventSource
    /// on what a listener may do there). PERF: a load and a predictable branch while nobody listens.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TraceActivate(WorkStruct work)
    {
        if (DeferRuntimeEventSource.WorkqueueOn)
        {
            DeferRuntimeEventSource.Log.workqueue_activate_work(RuntimeHelpers.GetHashCode(work), work.Name);
        }
    }
}
