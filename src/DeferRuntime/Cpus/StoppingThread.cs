namespace DeferRuntime.Cpus;

/// <summary>
/// A runtime thread shutdown has told to exit and is about to join (cpu/N, ksoftirqd/N, a kworker, a
/// rescuer, an irq thread, the wq ticker), with how to read its context should it never exit: read then,
/// not now, because irq threads and rescuers change theirs. Null context: a thread of no CPU.
/// </summary>
internal readonly record struct StoppingThread(Thread Thread, Func<ThreadContext?> Context);
