namespace DeferRuntime.Interrupts;

/// <summary>irqreturn_t: what a handler tells the flow handler (and the spurious detector).</summary>
[Flags]
public enum IrqReturn
{
    /// <summary>IRQ_NONE: the interrupt was not from this device (counted by the spurious detector).</summary>
    None = 0,
    /// <summary>IRQ_HANDLED: the interrupt was from this device and has been serviced.</summary>
    Handled = 1,
    /// <summary>IRQ_WAKE_THREAD: handled by the primary handler; wake the action's irq thread for the rest.</summary>
    WakeThread = 2,
}

/// <summary>irq_handler_t: a primary (hard-IRQ context) or thread handler; <paramref name="devId"/> is the cookie given at request.</summary>
public delegate IrqReturn IrqHandler(int irq, object? devId);

/// <summary>IRQF_* request flags (include/linux/interrupt.h). The trigger flags configure the line when it is first requested.</summary>
[Flags]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "The kernel's name (IRQF_*), as the issue and DESIGN spell it.")]
public enum IrqFlags
{
    /// <summary>No flags: keep the line's configured trigger, not shared.</summary>
    None = 0,
    /// <summary>IRQF_TRIGGER_RISING: edge triggered.</summary>
    TriggerRising = 0x1,
    /// <summary>IRQF_TRIGGER_FALLING: edge triggered.</summary>
    TriggerFalling = 0x2,
    /// <summary>IRQF_TRIGGER_HIGH: level triggered.</summary>
    TriggerHigh = 0x4,
    /// <summary>IRQF_TRIGGER_LOW: level triggered.</summary>
    TriggerLow = 0x8,
    /// <summary>IRQF_SHARED: several devices share the line; every action needs it and a unique dev cookie.</summary>
    Shared = 0x80,
    /// <summary>IRQF_NOBALANCING: deliver to the first CPU of the affinity mask only.</summary>
    NoBalancing = 0x800,
    /// <summary>IRQF_ONESHOT: keep the line masked until the threaded handler has returned.</summary>
    OneShot = 0x2000,
    /// <summary>IRQF_NO_AUTOEN: do not enable the line on request; the driver calls EnableIrq.</summary>
    NoAutoEnable = 0x80000,
}

/// <summary>How a line signals: the flow handler it gets (handle_edge_irq or handle_level_irq).</summary>
public enum IrqTrigger
{
    /// <summary>Edge: each assertion is one event; edges during handling are replayed once (coalesced).</summary>
    Edge,
    /// <summary>Level: the line stays asserted until the device is serviced, and fires again while it is.</summary>
    Level,
}

/// <summary>What happened to one assertion of a line, for the device's own accounting.</summary>
public enum IrqAssertResult
{
    /// <summary>The interrupt was latched and sent to a CPU.</summary>
    Delivered,
    /// <summary>The line was already latched (or already asserted): this event merged with the pending one.</summary>
    Coalesced,
    /// <summary>The line is masked: the event is latched and will be delivered at unmask.</summary>
    Latched,
}
