namespace DeferRuntime;

/// <summary>How an idle CPU waits for work (the kernel's idle= policies).</summary>
public enum IdlePolicy
{
    /// <summary>
    /// idle=poll: never park while idle; lowest wake-up latency, burns its core. Like the kernel's idle
    /// loop it runs only when no other task of its core is runnable: it parks while one is (a kworker with
    /// work, ksoftirqd, a woken irq thread) and polls again when the last one sleeps.
    /// </summary>
    Poll,
    /// <summary>Spin for <see cref="RuntimeOptions.PollWindow"/>, then park (the default, like cpuidle's poll state); parks at once while another task of its core is runnable.</summary>
    Hybrid,
    /// <summary>idle=halt: park at once; cheapest, slowest to wake.</summary>
    Halt,
}

/// <summary>Which OS priorities the runtime asks for.</summary>
public enum PriorityPolicy
{
    /// <summary>Leave every thread at the process's priority.</summary>
    None,
    /// <summary>Nice values: cpu/N at <see cref="RuntimeOptions.CpuNice"/>, ksoftirqd/N at <see cref="RuntimeOptions.KsoftirqdNice"/>.</summary>
    Nice,
    /// <summary>cpu/N SCHED_FIFO at <see cref="RuntimeOptions.CpuFifoPriority"/> (needs CAP_SYS_NICE); the rest by nice.</summary>
    Fifo,
}

/// <summary>Which CPU serves a request from a thread that belongs to no CPU.</summary>
public enum ForeignPlacement
{
    /// <summary>The virtual CPU pinned to the OS core the caller is running on (cache-local, like the kernel's this_cpu).</summary>
    ProcessorLocal,
    /// <summary>Each request to the next CPU in turn.</summary>
    RoundRobin,
}

/// <summary>Options of one runtime instance, validated by <see cref="Runtime.Boot"/>.</summary>
public sealed class RuntimeOptions
{
    /// <summary>Number of virtual CPUs; default the processor count. 1 to 1024.</summary>
    public int CpuCount { get; set; } = Environment.ProcessorCount;

    /// <summary>Pin CPU N's threads to core N mod cores with sched_setaffinity (default on).</summary>
    public bool Pinning { get; set; } = true;

    /// <summary>How idle CPUs wait (default <see cref="IdlePolicy.Hybrid"/>).</summary>
    public IdlePolicy IdlePolicy { get; set; } = IdlePolicy.Hybrid;

    /// <summary>Spin time before parking under <see cref="IdlePolicy.Hybrid"/> (default 50 µs).</summary>
    public TimeSpan PollWindow { get; set; } = TimeSpan.FromMicroseconds(50);

    /// <summary>
    /// How long an idle kworker spins for its pool's next item before it parks, unless
    /// <see cref="IdlePolicy"/> is Halt (default 10 µs; zero: never, as the kernel's kworkers). A kick
    /// within the window costs a cache-line transfer instead of a futex wake (the hot pool's sub-µs
    /// queue -> start), but the spinning worker shares its core with everything else at nice 0: with
    /// 50 µs, under the default storm, idle kworkers kept the busy ones waiting for a time slice (a bound
    /// workqueue's queue -> start p99 of 2-33 ms, against 0.3-1 ms with 10 µs and 0.1-0.2 ms with none).
    /// It also stops early while another task of one of its cores is runnable (a kworker with work,
    /// ksoftirqd, a woken irq thread).
    /// </summary>
    public TimeSpan WorkerPollWindow { get; set; } = TimeSpan.FromMicroseconds(10);

    /// <summary>Which OS priorities to ask for (default <see cref="PriorityPolicy.Nice"/>).</summary>
    public PriorityPolicy Priorities { get; set; } = PriorityPolicy.Nice;

    /// <summary>Nice of cpu/N: above workers (default -10). Lowering nice needs CAP_SYS_NICE; a refusal is reported, not fatal.</summary>
    public int CpuNice { get; set; } = -10;

    /// <summary>SCHED_FIFO priority of cpu/N under <see cref="PriorityPolicy.Fifo"/> (default 10).</summary>
    public int CpuFifoPriority { get; set; } = 10;

    /// <summary>Nice of ksoftirqd/N: 19 as the seed texts describe (default), 0 as current Linux.</summary>
    public int KsoftirqdNice { get; set; } = 19;

    /// <summary>
    /// While ksoftirqd/N runs, irq exit leaves softirqs to it except HI and TASKLET (Linux 4.15's "let
    /// ksoftirqd do its job", SOFTIRQ_NOW_MASK; default on). Off gives Linux 6.5+, which reverted it.
    /// </summary>
    public bool LetKsoftirqdDoItsJob { get; set; } = true;

    /// <summary>
    /// CONFIG_IRQ_TIME_ACCOUNTING: cpu/N times each hard-IRQ entry and every softirq run outside
    /// ksoftirqd (two clock reads per entry and per __do_softirq), so <see cref="Cpus.VirtualCpu.GetCpuTime"/>
    /// can split a CPU's time into hard-IRQ and softirq. Off by default: the hot paths then read no clock.
    /// </summary>
    public bool IrqTimeAccounting { get; set; }

    /// <summary>panic_on_oops: a throwing handler halts the whole runtime instead of being reported and survived.</summary>
    public bool PanicOnOops { get; set; }

    /// <summary>Where requests from threads of no CPU go (default <see cref="ForeignPlacement.ProcessorLocal"/>).</summary>
    public ForeignPlacement ForeignPlacement { get; set; } = ForeignPlacement.ProcessorLocal;

    /// <summary>Interrupt lines of the controller (default 64, at most <see cref="Interrupts.IrqController.MaxLines"/>).</summary>
    public int IrqLines { get; set; } = 64;

    /// <summary>
    /// CONFIG_HZ: jiffies per second (default 1000), 100 to 10000. The timer wheel's resolution: a jiffy
    /// is 1/Hz s, and <see cref="Runtime.Jiffies"/> counts them since boot. It costs nothing when idle
    /// (the clock event is one-shot, tickless), so a high value only makes the wheel finer.
    /// </summary>
    public int Hz { get; set; } = 1000;

    /// <summary>How long shutdown waits for accepted work to drain before it reports what is left (default 30 s).</summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a worker beyond the two a pool keeps idle may stay idle before it retires (the kernel's
    /// IDLE_WORKER_TIMEOUT, default 300 s).
    /// </summary>
    public TimeSpan WorkqueueIdleTimeout { get; set; } = TimeSpan.FromSeconds(300);

    /// <summary>
    /// The workqueue stall watchdog (workqueue.watchdog_thresh): a pool with waiting items that starts none
    /// for this long is reported in <see cref="Runtime.Faults"/> with its in-flight and pending items.
    /// Default 30 s; zero turns it off.
    /// </summary>
    public TimeSpan WorkqueueWatchdogThreshold { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// workqueue.cpu_intensive_thresh_us: a work item running this long without sleeping stops counting
    /// for concurrency management (default 10 ms, 1 ms to 10 s).
    /// </summary>
    public TimeSpan WorkqueueCpuIntensiveThreshold { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// Concurrency management for items that block outside the runtime's primitives (default on, Linux).
    /// The kernel's scheduler tells a pool at once when any of its workers sleeps; here only
    /// <see cref="Locking"/> primitives and msleep do. With this on, the workqueue ticker also counts out a
    /// worker that the OS reports sleeping and that used no CPU for two ticks (Thread.Sleep, Monitor,
    /// Task.Wait, blocking I/O), so the next item on its pool starts within a few milliseconds instead of
    /// waiting for the blocked one. Off: such an item holds its CPU's pool until it returns.
    /// </summary>
    public bool WorkqueueDetectBlockedOutside { get; set; } = true;

    internal void Validate()
    {
        if (WorkqueueIdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(WorkqueueIdleTimeout), WorkqueueIdleTimeout, "WorkqueueIdleTimeout must be positive.");
        }
        if (WorkqueueWatchdogThreshold < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(WorkqueueWatchdogThreshold), WorkqueueWatchdogThreshold, "WorkqueueWatchdogThreshold must be zero (off) or positive.");
        }
        if (WorkqueueCpuIntensiveThreshold < TimeSpan.FromMilliseconds(1) || WorkqueueCpuIntensiveThreshold > TimeSpan.FromSeconds(10))
        {
            throw new ArgumentOutOfRangeException(nameof(WorkqueueCpuIntensiveThreshold), WorkqueueCpuIntensiveThreshold, "WorkqueueCpuIntensiveThreshold must be 1 ms to 10 s (the ticker's resolution is 1 ms).");
        }
        if (IrqLines is < 1 or > Interrupts.IrqController.MaxLines)
        {
            throw new ArgumentOutOfRangeException(nameof(IrqLines), IrqLines, $"IrqLines must be 1 to {Interrupts.IrqController.MaxLines} (per-CPU vectors 16 to 255 carry the lines).");
        }
        if (CpuCount is < 1 or > 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(CpuCount), CpuCount, "CpuCount must be 1 to 1024 (NR_CPUS).");
        }
        if (WorkerPollWindow < TimeSpan.Zero || WorkerPollWindow > TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(WorkerPollWindow), WorkerPollWindow, "WorkerPollWindow must be 0 to 1 s.");
        }
        if (PollWindow < TimeSpan.Zero || PollWindow > TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(PollWindow), PollWindow, "PollWindow must be 0 to 1 s.");
        }
        if (CpuNice is < -20 or > 19 || KsoftirqdNice is < -20 or > 19)
        {
            throw new ArgumentOutOfRangeException(nameof(CpuNice), "nice values are -20 to 19.");
        }
        if (CpuFifoPriority is < 1 or > 99)
        {
            throw new ArgumentOutOfRangeException(nameof(CpuFifoPriority), CpuFifoPriority, "SCHED_FIFO priorities are 1 to 99.");
        }
        if (ShutdownTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ShutdownTimeout), ShutdownTimeout, "ShutdownTimeout must be positive.");
        }
        if (Hz is < 100 or > 10_000)
        {
            throw new ArgumentOutOfRangeException(nameof(Hz), Hz, "Hz must be 100 to 10000 jiffies per second (CONFIG_HZ; the kernel offers 100, 250, 300 and 1000).");
        }
        if (!Enum.IsDefined(IdlePolicy) || !Enum.IsDefined(Priorities) || !Enum.IsDefined(ForeignPlacement))
        {
            throw new ArgumentOutOfRangeException(nameof(IdlePolicy), "unknown idle, priority or placement policy.");
        }
    }
}
