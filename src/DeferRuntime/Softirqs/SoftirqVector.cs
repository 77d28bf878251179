namespace DeferRuntime.Softirqs;

/// <summary>The ten softirq vectors, in Linux order (include/linux/interrupt.h); lower runs first.</summary>
public enum SoftirqVector
{
    /// <summary>HI_SOFTIRQ: high-priority tasklets.</summary>
    Hi = 0,
    /// <summary>TIMER_SOFTIRQ: the timer wheel.</summary>
    Timer = 1,
    /// <summary>NET_TX_SOFTIRQ: transmit completion.</summary>
    NetTx = 2,
    /// <summary>NET_RX_SOFTIRQ: NAPI polling.</summary>
    NetRx = 3,
    /// <summary>BLOCK_SOFTIRQ: block I/O completion.</summary>
    Block = 4,
    /// <summary>IRQ_POLL_SOFTIRQ: irq_poll.</summary>
    IrqPoll = 5,
    /// <summary>TASKLET_SOFTIRQ: normal tasklets.</summary>
    Tasklet = 6,
    /// <summary>SCHED_SOFTIRQ: scheduler load balancing.</summary>
    Sched = 7,
    /// <summary>HRTIMER_SOFTIRQ: high-resolution timers.</summary>
    Hrtimer = 8,
    /// <summary>RCU_SOFTIRQ: RCU callbacks; always last.</summary>
    Rcu = 9,
}
