using System.Globalization;

namespace DeferRuntime.Workqueues;

/// <summary>
/// struct workqueue_attrs: what an unbound pool is keyed by, its workers' nice value and the virtual
/// CPUs whose cores they may run on. Unbound workqueues with equal attributes share one pool.
/// </summary>
public sealed class WorkqueueAttrs : IEquatable<WorkqueueAttrs>
{
    /// <summary>HIGHPRI_NICE_LEVEL (MIN_NICE): the nice of high-priority workers.</summary>
    public const int HighPriNice = -20;

    private readonly int[]? _cpus;

    /// <summary>alloc_workqueue_attrs(): <paramref name="nice"/> -20 to 19; <paramref name="cpus"/> null for every CPU.</summary>
    public WorkqueueAttrs(int nice = 0, IEnumerable<int>? cpus = null)
    {
        if (nice is < -20 or > 19)
        {
            throw new ArgumentOutOfRangeException(nameof(nice), nice, "workqueue_attrs: nice values are -20 to 19.");
        }
        Nice = nice;
        if (cpus is not null)
        {
            _cpus = cpus.Distinct().Order().ToArray();
            if (_cpus.Length == 0)
            {
                throw new ArgumentException("workqueue_attrs: the CPU mask is empty; an unbound pool needs at least one CPU.", nameof(cpus));
            }
        }
    }

    /// <summary>The workers' nice value.</summary>
    public int Nice { get; }

    /// <summary>The virtual CPUs of the mask, ascending, or null for all of them.</summary>
    public IReadOnlyList<int>? Cpus => _cpus;

    /// <summary>The mask's CPUs for a runtime with <paramref name="cpuCount"/> CPUs; throws for one it does not have.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2208:Instantiate argument exceptions correctly", Justification = "The bad value is the Cpus property of these attributes, not an argument of Resolve.")]
    internal int[] Resolve(int cpuCount)
    {
        if (_cpus is null)
        {
            return Enumerable.Range(0, cpuCount).ToArray();
        }
        foreach (int cpu in _cpus)
        {
            if (cpu < 0 || cpu >= cpuCount)
            {
                throw new ArgumentOutOfRangeException(nameof(Cpus), cpu, $"workqueue_attrs: CPU {cpu} does not exist; this runtime has CPUs 0 to {cpuCount - 1}.");
            }
        }
        return _cpus;
    }

    internal string DescribeCpus(int cpuCount)
    {
        int[] cpus = Resolve(cpuCount);
        return cpus.Length == cpuCount ? $"0-{cpuCount - 1}" : string.Join(",", cpus.Select(c => c.ToString(CultureInfo.InvariantCulture)));
    }

    /// <inheritdoc />
    public bool Equals(WorkqueueAttrs? other) =>
        other is not null && Nice == other.Nice &&
        (_cpus is null ? other._cpus is null : other._cpus is not null && _cpus.AsSpan().SequenceEqual(other._cpus));

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as WorkqueueAttrs);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Nice);
        foreach (int cpu in _cpus ?? [])
        {
            hash.Add(cpu);
        }
        return hash.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => $"nice={Nice} cpus={(_cpus is null ? "all" : string.Join(",", _cpus))}";
}
