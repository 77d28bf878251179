namespace DeferRuntime.Cli.Storm.Faults;

/// <summary>The faults a storm injects (<c>--fault</c>, repeatable or comma-separated).</summary>
/// <param name="ThrowEvery">throw-every=N: the handler run that completes every Nth event of a path throws (0: off).</param>
/// <param name="IrqNone">irq-none: a screaming level line whose only handler returns IRQ_NONE; the spurious detector must disable it.</param>
/// <param name="SelfRaisingSoftirq">self-raising-softirq: an IRQ_POLL action that raises itself on CPU 0; ksoftirqd/0 must take over, workers keep going.</param>
/// <param name="StuckWork">stuck-work: a bound work item that blocks outside the runtime's primitives, the detection of such blocks off for the run; the stall watchdog must report its pool, other pools keep running.</param>
internal sealed record FaultPlan(long ThrowEvery, bool IrqNone, bool SelfRaisingSoftirq, bool StuckWork)
{
    public static readonly FaultPlan None = new(0, false, false, false);

    public const string Help = "throw-every=N | irq-none | self-raising-softirq | stuck-work";

    public bool Any => ThrowEvery > 0 || IrqNone || SelfRaisingSoftirq || StuckWork;

    /// <summary>Parses the --fault values; throws <see cref="FormatException"/> naming the bad one.</summary>
    public static FaultPlan Parse(IEnumerable<string> specs)
    {
        var plan = None;
        foreach (string raw in specs.SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            string spec = raw.ToLowerInvariant();
            if (spec.StartsWith("throw-every=", StringComparison.Ordinal))
            {
                if (!long.TryParse(spec["throw-every=".Length..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) || n < 1)
                {
                    throw new FormatException($"--fault {raw}: N must be a whole number of events, at least 1");
                }
                plan = plan with { ThrowEvery = n };
            }
            else
            {
                plan = spec switch
                {
                    "irq-none" => plan with { IrqNone = true },
                    "self-raising-softirq" => plan with { SelfRaisingSoftirq = true },
                    "stuck-work" => plan with { StuckWork = true },
                    _ => throw new FormatException($"--fault {raw}: unknown fault; expected {Help}"),
                };
            }
        }
        return plan;
    }

    /// <summary>The plan as --fault values.</summary>
    public IReadOnlyList<string> ToSpecs()
    {
        var specs = new List<string>();
        if (ThrowEvery > 0)
        {
            specs.Add($"throw-every={ThrowEvery}");
        }
        if (IrqNone)
        {
            specs.Add("irq-none");
        }
        if (SelfRaisingSoftirq)
        {
            specs.Add("self-raising-softirq");
        }
        if (StuckWork)
        {
            specs.Add("stuck-work");
        }
        return specs;
    }
}
