namespace DeferRuntime.Diagnostics;

/// <summary>What kind of report a <see cref="FaultRecord"/> is, so that a log or an alert can tell them apart without parsing messages.</summary>
public enum FaultKind
{
    /// <summary>An oops: a handler, tasklet, work item or call threw, or returned with its context broken.</summary>
    Oops,

    /// <summary>A WARN(): a misuse or misbehaviour the runtime handled (unbalanced enable_irq(), a bogus handler return, ...).</summary>
    Warning,

    /// <summary>note_interrupt()'s "nobody cared": a line disabled because it kept firing unhandled.</summary>
    SpuriousIrqDisabled,

    /// <summary>The workqueue watchdog's "BUG: workqueue lockup": a pool made no progress for the threshold.</summary>
    WorkqueueStall,
}
