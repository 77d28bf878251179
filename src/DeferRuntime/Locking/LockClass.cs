namespace DeferRuntime.Locking;

/// <summary>
/// struct lock_class: what the lock validator reasons about. Every lock constructed with the same name
/// (or, unnamed, at the same source line) belongs to one class, as lockdep keys classes by their
/// static key.
/// </summary>
public sealed class LockClass
{
    internal LockClass(string name, LockValidator validator)
    {
        Name = name;
        Validator = validator;
    }

    /// <summary>The class name: the lock's name, or its declaration site.</summary>
    public string Name { get; }

    internal LockValidator Validator { get; }

    /// <summary>Classes acquired while this one was held (locks_after). L: the validator's lock.</summary>
    internal HashSet<LockClass> After { get; } = [];

    /// <summary>Classes held when this one was acquired (locks_before). L: the validator's lock.</summary>
    internal HashSet<LockClass> Before { get; } = [];

    /// <summary>LOCK_USED_IN_HARDIRQ ... LOCK_ENABLED_SOFTIRQ bits. L: the validator's lock.</summary>
    internal LockUsage Usage { get; set; }

    /// <summary>Where each usage bit was first seen, for reports. L: the validator's lock.</summary>
    internal Dictionary<LockUsage, string> UsageTrace { get; } = [];

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>lockdep's usage states of a lock class.</summary>
[Flags]
internal enum LockUsage
{
    None = 0,
    UsedInHardirq = 1 << 0,    // acquired in hard-IRQ context: hardirq-safe
    EnabledHardirq = 1 << 1,   // acquired with interrupts enabled: hardirq-unsafe
    UsedInSoftirq = 1 << 2,    // acquired in softirq context: softirq-safe
    EnabledSoftirq = 1 << 3,   // acquired with softirqs enabled: softirq-unsafe
}
