namespace DeferRuntime.Cli.Storm;

/// <summary>The drivers a storm drives: one per way the kernel defers the work of an interrupt.</summary>
internal enum StormPathKind
{
    /// <summary>All the work in the hard-IRQ handler (no bottom half).</summary>
    HardIrq,
    /// <summary>The top half schedules a tasklet (tasklet_schedule(), TASKLET_SOFTIRQ).</summary>
    Tasklet,
    /// <summary>The top half raises a softirq of its own (BLOCK_SOFTIRQ, as blk-mq completions do).</summary>
    Softirq,
    /// <summary>request_threaded_irq(): the primary handler returns IRQ_WAKE_THREAD, irq/L-name does the work.</summary>
    ThreadedIrq,
    /// <summary>queue_work() on a bound workqueue: a kworker of the CPU that took the interrupt.</summary>
    WorkqueueBound,
    /// <summary>queue_work() on a WQ_UNBOUND workqueue: a kworker of an unbound pool.</summary>
    WorkqueueUnbound,
    /// <summary>queue_work() on a WQ_BH workqueue: the tasklets' successor, run in softirq context.</summary>
    BhWorkqueue,
    /// <summary>A NAPI NIC over a real loopback UDP socket: top half masks the device, NET_RX polls it.</summary>
    Napi,
}

/// <summary>The command-line names of <see cref="StormPathKind"/>.</summary>
internal static class StormPathKinds
{
    public static readonly StormPathKind[] All = Enum.GetValues<StormPathKind>();

    public static string CliName(this StormPathKind kind) => kind switch
    {
        StormPathKind.HardIrq => "hardirq",
        StormPathKind.Tasklet => "tasklet",
        StormPathKind.Softirq => "softirq",
        StormPathKind.ThreadedIrq => "threaded",
        StormPathKind.WorkqueueBound => "wq-bound",
        StormPathKind.WorkqueueUnbound => "wq-unbound",
        StormPathKind.BhWorkqueue => "bh-wq",
        StormPathKind.Napi => "napi",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>What the path's bottom half is, for the report.</summary>
    public static string Describe(this StormPathKind kind) => kind switch
    {
        StormPathKind.HardIrq => "work in the hard-IRQ handler",
        StormPathKind.Tasklet => "tasklet (TASKLET softirq)",
        StormPathKind.Softirq => "BLOCK softirq, per-CPU queues",
        StormPathKind.ThreadedIrq => "threaded IRQ (irq/L thread)",
        StormPathKind.WorkqueueBound => "bound workqueue (kworker/N)",
        StormPathKind.WorkqueueUnbound => "unbound workqueue (kworker/uP)",
        StormPathKind.BhWorkqueue => "WQ_BH workqueue (softirq)",
        StormPathKind.Napi => "NAPI poll (NET_RX) of a loopback UDP NIC",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    public static bool TryParse(string name, out StormPathKind kind)
    {
        foreach (var k in All)
        {
            if (string.Equals(k.CliName(), name.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                kind = k;
                return true;
            }
        }
        kind = default;
        return false;
    }
}
