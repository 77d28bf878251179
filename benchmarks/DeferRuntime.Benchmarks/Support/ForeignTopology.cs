namespace DeferRuntime.Benchmarks.Support;

/// <summary>
/// The cross-core layout of the foreign-thread handoff measurements: the producing thread (a thread of no
/// CPU) alone on the first allowed core, the consumer (a one-CPU runtime's cpu/0, or a peer's consumer
/// thread) alone on the last.
/// </summary>
/// <remarks>
/// <code>
///   core P (first allowed)                     core C (last allowed)
/// | producer: thread of no CPU |---request--->| cpu/0 (IdlePolicy.Poll) or peer consumer |
/// |   spins on the done line   |&lt;---done------|   callback bumps the done counter         |
/// </code>
/// Why one virtual CPU, booted under an affinity of {C}: the runtime pins cpu/N to core <c>N mod cores</c>
/// of the affinity mask it is booted under, and a Poll CPU never parks. With <c>CpuCount = 2</c> on a
/// 2-core machine, cpu/0 would poll on core P and time-share it with the producer (and
/// ProcessorLocal placement would send the producer's requests to that very CPU). Booting from a thread
/// restricted to {C} (what <c>taskset -c C</c> does to a process) puts cpu/0 and ksoftirqd/0 on C, and
/// the producer then pins itself to P. RoundRobin placement over one CPU always picks cpu/0, whatever
/// core the producer runs on.
/// </remarks>
internal static class ForeignTopology
{
    /// <summary>The producer's core.</summary>
    public static int ProducerCore => Cores()[0];

    /// <summary>The consumer's core.</summary>
    public static int ConsumerCore => Cores()[^1];

    /// <summary>
    /// Boots a one-CPU runtime on <see cref="ConsumerCore"/>, then pins the calling thread to
    /// <see cref="ProducerCore"/>. <paramref name="workerPollWindow"/>: the runtime's
    /// <see cref="RuntimeOptions.WorkerPollWindow"/>, if not the default.
    /// </summary>
    public static Runtime BootRemoteCpu(IdlePolicy idlePolicy, TimeSpan? workerPollWindow = null)
    {
        int producer = ProducerCore, consumer = ConsumerCore;
        Runtime runtime;
        ThreadAffinity.Pin(consumer);
        try
        {
            var options = new RuntimeOptions
            {
                CpuCount = 1,
                IdlePolicy = idlePolicy,
                ForeignPlacement = ForeignPlacement.RoundRobin,
            };
            if (workerPollWindow is { } window)
            {
                options.WorkerPollWindow = window;
            }
            runtime = Runtime.Boot(options);
        }
        finally
        {
            ThreadAffinity.Pin(producer);
        }
        if (ThreadAffinity.IsSupported && (runtime.Cpus[0].Core != consumer || runtime.Placements.Any(p => !p.Pinned)))
        {
            string report = runtime.RenderPlacements();
            runtime.Dispose();
            throw new InvalidOperationException($"cpu/0 should be pinned to core {consumer}, apart from the producer on core {producer}; boot report:\n{report}");
        }
        return runtime;
    }

    /// <summary>Pins the calling thread (the measuring thread) to <see cref="ProducerCore"/>.</summary>
    public static void PinProducer() => ThreadAffinity.Pin(ProducerCore);

    /// <summary>Starts a dedicated, pinned consumer thread for a peer: the counterpart of cpu/0.</summary>
    public static Thread StartConsumer(string name, Action loop)
    {
        int core = ConsumerCore;
        var thread = new Thread(() =>
        {
            ThreadAffinity.Pin(core);
            loop();
        })
        {
            Name = name,
            IsBackground = true,
        };
        thread.Start();
        return thread;
    }

    /// <summary>Restores the calling thread's affinity to every core the process started with.</summary>
    public static void Unpin() => ThreadAffinity.Pin(ThreadAffinity.OriginalCores);

    private static int[] Cores()
    {
        int[] cores = ThreadAffinity.OriginalCores;
        if (cores.Length < 2)
        {
            throw new PlatformNotSupportedException($"the foreign-thread handoff needs two cores (producer and consumer apart); this process may run on {cores.Length}.");
        }
        return cores;
    }
}
