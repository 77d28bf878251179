using System.Globalization;
using System.Runtime.CompilerServices;

namespace DeferRuntime.Torture.Suites;

/// <summary>The per-CPU counters of the percpu suite, by who shares them.</summary>
internal enum PerCpuDatum
{
    Task,   // tasks only: preempt_disable() is enough
    Bh,     // tasks and softirqs: tasks need local_bh_disable()
    Irq,    // tasks, softirqs and hard IRQs: tasks and softirqs need local_irq_save()
}

/// <summary>Where an increment comes from: the context and the protection it holds (see <see cref="PerCpuBooks.Sites"/>).</summary>
internal enum PerCpuSite
{
    TaskGetCpuVar,
    TaskPreemptDisable,
    TaskSpinLock,
    TaskIrqSaveAll,
    BhLocalBhDisable,
    BhSpinLockBh,
    BhIrqSaveAll,
    BhSoftirq,
    BhTasklet,
    BhWork,
    IrqLocalIrqSave,
    IrqSpinLockIrqSave,
    IrqIrqSaveAll,
    IrqSoftirqIrqSave,
    IrqHardirq,
    IrqBustedPreempt,
}

/// <summary>What drove the contexts, counted per CPU (the CPU the IPI targets, or the CPU that ran or raised).</summary>
internal enum PerCpuEvent
{
    IpiSent,
    IpiBusy,
    IpiRun,
    TaskletSchedule,
    TaskletRun,
    SoftirqRaise,
    SoftirqRun,
    BhWorkQueued,
    BhWorkRun,
    WorkRun,
}

/// <summary>
/// The percpu suite's books, kept apart from the data under test: per CPU, an atomic tally of every
/// increment attempt by site, an in-section count per datum (a second updater inside at once is an
/// overlap, counted), and the event counts. Everything here is Interlocked, so the books are exact
/// whatever the runtime's exclusion does; only the per-CPU counters themselves are plain.
/// </summary>
/// <remarks>
/// Layout: one long[] block per CPU (sites, events, overlaps), a multiple of 128 bytes, and one int per
/// CPU and datum for the in-section counts, each on its own 128 bytes: the CPUs' updaters, and on one
/// CPU a hard IRQ and a task on different data, do not bounce each other's lines (that would slow the
/// run, not change its verdict).
/// </remarks>
internal sealed class PerCpuBooks
{
    private const int LineLongs = 16; // 128 bytes, the PerCpu<T> separation
    private const int LineInts = 32;
    private const int SiteCount = (int)PerCpuSite.IrqBustedPreempt + 1;
    private const int EventCount = (int)PerCpuEvent.WorkRun + 1;
    private const int DatumCount = (int)PerCpuDatum.Irq + 1;
    private const int EventBase = SiteCount;
    private const int OverlapBase = SiteCount + EventCount;
    private const int BlockLongs = (OverlapBase + DatumCount + LineLongs - 1) / LineLongs * LineLongs;

    /// <summary>Each site's datum, context and protection, by <see cref="PerCpuSite"/>.</summary>
    public static readonly (PerCpuDatum Datum, string Context, string Protection)[] Sites =
    [
        (PerCpuDatum.Task, "task", "get_cpu_var"),
        (PerCpuDatum.Task, "task", "preempt_disable"),
        (PerCpuDatum.Task, "task", "spin_lock"),
        (PerCpuDatum.Task, "task", "local_irq_save (all three)"),
        (PerCpuDatum.Bh, "task", "local_bh_disable"),
        (PerCpuDatum.Bh, "task", "spin_lock_bh"),
        (PerCpuDatum.Bh, "task", "local_irq_save (all three)"),
        (PerCpuDatum.Bh, "softirq", "none (softirq handler)"),
        (PerCpuDatum.Bh, "softirq", "none (tasklet)"),
        (PerCpuDatum.Bh, "softirq", "none (bh work)"),
        (PerCpuDatum.Irq, "task", "local_irq_save"),
        (PerCpuDatum.Irq, "task", "spin_lock_irqsave"),
        (PerCpuDatum.Irq, "task", "local_irq_save (all three)"),
        (PerCpuDatum.Irq, "softirq", "local_irq_save"),
        (PerCpuDatum.Irq, "hardirq", "none (IPI)"),
        (PerCpuDatum.Irq, "task", "preempt_disable only (BUSTED)"),
    ];

    /// <summary>Each datum's report name and who shares it, by <see cref="PerCpuDatum"/>.</summary>
    public static readonly (string Name, string SharedBy)[] Data =
    [
        ("task", "tasks"),
        ("bh", "tasks, softirqs"),
        ("irq", "tasks, softirqs, hard IRQs"),
    ];

    private readonly long[] _blocks; // A: per CPU, BlockLongs after a leading line
    private readonly int[] _inside;  // A: per CPU and datum, updaters inside a section

    public PerCpuBooks(int cpus)
    {
        Cpus = cpus;
        _blocks = new long[LineLongs + (cpus * BlockLongs)];
        _inside = new int[(1 + (cpus * DatumCount)) * LineInts];
    }

    public int Cpus { get; }

    /// <summary>An updater of <paramref name="datum"/> on <paramref name="cpu"/> enters its section; an overlap if another one is inside.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter(int cpu, PerCpuDatum datum)
    {
        if (Interlocked.Increment(ref Inside(cpu, datum)) != 1)
        {
            Interlocked.Increment(ref Slot(cpu, OverlapBase + (int)datum));
        }
    }

    /// <summary>The updater leaves its section (after its write) and tallies its increment.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Leave(int cpu, PerCpuDatum datum, PerCpuSite site)
    {
        Interlocked.Decrement(ref Inside(cpu, datum));
        Interlocked.Increment(ref Slot(cpu, (int)site));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Count(int cpu, PerCpuEvent e) => Interlocked.Increment(ref Slot(cpu, EventBase + (int)e));

    public long Tallied(int cpu, PerCpuSite site) => Volatile.Read(ref Slot(cpu, (int)site));

    public long Events(PerCpuEvent e)
    {
        long sum = 0;
        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            sum += Volatile.Read(ref Slot(cpu, EventBase + (int)e));
        }
        return sum;
    }

    public long Overlaps(int cpu, PerCpuDatum datum) => Volatile.Read(ref Slot(cpu, OverlapBase + (int)datum));

    /// <summary>Increments tallied for <paramref name="datum"/> on <paramref name="cpu"/>, every site.</summary>
    public long Tallied(int cpu, PerCpuDatum datum)
    {
        long sum = 0;
        for (int s = 0; s < SiteCount; s++)
        {
            if (Sites[s].Datum == datum)
            {
                sum += Tallied(cpu, (PerCpuSite)s);
            }
        }
        return sum;
    }

    /// <summary>
    /// The stats of <paramref name="datum"/> given the counter's final value on each CPU. Sites are listed
    /// in table order; the busted one only when <paramref name="busted"/>.
    /// </summary>
    public PerCpuDatumStats Stats(PerCpuDatum datum, long[] counterPerCpu, bool busted)
    {
        var sites = new List<PerCpuSiteStats>();
        for (int s = 0; s < SiteCount; s++)
        {
            if (Sites[s].Datum != datum || ((PerCpuSite)s == PerCpuSite.IrqBustedPreempt && !busted))
            {
                continue;
            }
            long n = 0;
            for (int cpu = 0; cpu < Cpus; cpu++)
            {
                n += Tallied(cpu, (PerCpuSite)s);
            }
            sites.Add(new PerCpuSiteStats(Sites[s].Context, Sites[s].Protection, n));
        }
        return new PerCpuDatumStats
        {
            Name = Data[(int)datum].Name,
            SharedBy = Data[(int)datum].SharedBy,
            CounterPerCpu = counterPerCpu,
            TalliedPerCpu = [.. Enumerable.Range(0, Cpus).Select(cpu => Tallied(cpu, datum))],
            Overlaps = Enumerable.Range(0, Cpus).Sum(cpu => Overlaps(cpu, datum)),
            Sites = sites,
        };
    }

    /// <summary>
    /// "exact totals": on every CPU, every counter equals the increments tallied for it. A counter short
    /// of its tally lost updates to sections that overlapped; the detail names each CPU and datum that
    /// differs.
    /// </summary>
    public static TortureCheck ExactTotals(IReadOnlyList<PerCpuDatumStats> data)
    {
        var wrong = new List<string>();
        foreach (var d in data)
        {
            for (int cpu = 0; cpu < d.CounterPerCpu.Count; cpu++)
            {
                long counter = d.CounterPerCpu[cpu], tallied = d.TalliedPerCpu[cpu];
                if (counter != tallied)
                {
                    wrong.Add(string.Create(CultureInfo.InvariantCulture,
                        $"CPU {cpu} {d.Name}: counter {counter}, tallied {tallied} ({(tallied > counter ? $"{tallied - counter} lost" : $"{counter - tallied} too many")})"));
                }
            }
        }
        return new TortureCheck("exact totals", wrong.Count == 0, wrong.Count == 0
            ? "per CPU and datum, counter = tallied increments: " + string.Join(", ", data.Select(d => string.Create(CultureInfo.InvariantCulture, $"{d.Name} {d.Counter}")))
            : string.Join("; ", wrong));
    }

    /// <summary>"no overlap": no section on a datum of a CPU found another updater of the same CPU inside.</summary>
    public static TortureCheck NoOverlap(IReadOnlyList<PerCpuDatumStats> data)
    {
        long overlaps = data.Sum(d => d.Overlaps);
        return new TortureCheck("no overlap", overlaps == 0, string.Create(CultureInfo.InvariantCulture,
            $"{overlaps} sections found another updater of their CPU's datum inside ({string.Join(", ", data.Select(d => string.Create(CultureInfo.InvariantCulture, $"{d.Name} {d.Overlaps}")))})"));
    }

    /// <summary>
    /// "coverage": on every CPU, each datum was incremented from every context that shares it (tasks;
    /// softirqs for bh and irq; hard IRQs for irq), so a pass is not vacuous.
    /// </summary>
    public TortureCheck Coverage()
    {
        var missing = new List<string>();
        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            foreach (var (datum, context) in new[]
            {
                (PerCpuDatum.Task, "task"), (PerCpuDatum.Bh, "task"), (PerCpuDatum.Bh, "softirq"),
                (PerCpuDatum.Irq, "task"), (PerCpuDatum.Irq, "softirq"), (PerCpuDatum.Irq, "hardirq"),
            })
            {
                long n = 0;
                for (int s = 0; s < SiteCount; s++)
                {
                    if (Sites[s].Datum == datum && Sites[s].Context == context)
                    {
                        n += Tallied(cpu, (PerCpuSite)s);
                    }
                }
                if (n == 0)
                {
                    missing.Add(string.Create(CultureInfo.InvariantCulture, $"CPU {cpu} {Data[(int)datum].Name} from {context}"));
                }
            }
        }
        return new TortureCheck("coverage", missing.Count == 0, missing.Count == 0
            ? string.Create(CultureInfo.InvariantCulture, $"on each of {Cpus} CPUs every datum was updated from every context sharing it")
            : "never updated: " + string.Join(", ", missing));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref long Slot(int cpu, int index) => ref _blocks[LineLongs + (cpu * BlockLongs) + index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref int Inside(int cpu, PerCpuDatum datum) => ref _inside[(1 + (cpu * DatumCount) + (int)datum) * LineInts];
}
