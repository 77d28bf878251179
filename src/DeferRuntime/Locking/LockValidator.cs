using System.Text;
using DeferRuntime.Cpus;

namespace DeferRuntime.Locking;

/// <summary>What the lock validator found: the kind of bug (lockdep's headline) and the full report.</summary>
/// <param name="Kind">"circular locking dependency", "recursive locking", "hardirq-safe -> hardirq-unsafe lock order", ...</param>
/// <param name="Message">The report, with both chains where there are two.</param>
public sealed record LockValidatorReport(string Kind, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"WARNING: possible {Kind} detected\n{Message}";
}

/// <summary>
/// A lock validator in the spirit of lockdep (Documentation/locking/lockdep-design.rst): it reports a
/// locking bug the first time it becomes possible, not when it deadlocks: lock-order inversions (ABBA
/// and longer cycles) between lock classes, irq-safe to irq-unsafe dependencies and inconsistent irq
/// usage, recursive acquisition, unlocking a lock not held, and disposing a held lock.
/// </summary>
/// <remarks>
/// Opt-in. Locks are bound to a validator when constructed; a lock constructed while its validator is
/// off carries no class and its lock paths pay a single null check. <see cref="Default"/> is what locks
/// use when none is given; it starts on when the environment variable DEFER_LOCKDEP=1 is set or
/// <see cref="Enable"/> is called. Separate instances keep unrelated graphs (tests) apart.
/// Every graph update happens under one lock: validation is for debugging, not for speed.
/// </remarks>
public sealed class LockValidator
{
    private readonly Lock _graph = new();
    private readonly Dictionary<string, LockClass> _classes = new(StringComparer.Ordinal); // L: _graph
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal); // L: _graph
    private readonly List<LockValidatorReport> _reports = []; // L: _graph
    private volatile bool _enabled;

    /// <summary>Creates a validator, on by default.</summary>
    public LockValidator(bool enabled = true) => _enabled = enabled;

    /// <summary>The validator locks use when none is given.</summary>
    public static LockValidator Default { get; } = new(Environment.GetEnvironmentVariable("DEFER_LOCKDEP") == "1");

    /// <summary>True when locks constructed now get a class and are validated.</summary>
    public bool Enabled => _enabled;

    /// <summary>Turns validation on for locks constructed from now on.</summary>
    public void Enable() => _enabled = true;

    /// <summary>Raised for each new report, on the thread that made the bug possible, outside the validator's lock.</summary>
    public event EventHandler<LockValidatorReport>? Reported;

    /// <summary>Every report so far, oldest first.</summary>
    public IReadOnlyList<LockValidatorReport> Reports
    {
        get
        {
            lock (_graph)
            {
                return _reports.ToArray();
            }
        }
    }

    /// <summary>The class for a lock named <paramref name="name"/>, or null while the validator is off.</summary>
    internal LockClass? ClassFor(string name)
    {
        if (!_enabled)
        {
            return null;
        }
        lock (_graph)
        {
            if (!_classes.TryGetValue(name, out var cls))
            {
                cls = new LockClass(name, this);
                _classes.Add(name, cls);
            }
            return cls;
        }
    }

    /// <summary>
    /// lock_acquire(): validates an acquisition before the caller waits for the lock. Returns true when
    /// the thread already holds this very lock (a certain self-deadlock), which the caller refuses.
    /// </summary>
    internal bool Acquire(LockClass cls, object lockObject, string lockName, LockThreadState state, bool read, bool trylock)
    {
        var ctx = ThreadContext.Current;
        var found = new List<LockValidatorReport>();
        bool selfDeadlock = false;
        lock (_graph)
        {
            string where = Where(ctx);

            // Recursion: the same lock, or another lock of the same class, already held.
            foreach (var held in state.Held)
            {
                if (held.Class != cls)
                {
                    continue;
                }
                bool same = ReferenceEquals(held.Lock, lockObject);
                if (same && !(read && held.Read))
                {
                    selfDeadlock = !trylock;
                }
                if (!trylock)
                {
                    Add(found, "recursive locking", $"recursive:{cls.Name}:{same}",
                        $"{where} is acquiring '{lockName}' (class {cls.Name}) while already holding " +
                        $"{(same ? "it" : $"'{held.Name}' of the same class")}:\n  held: {state.DescribeHeld()}\n" +
                        (same ? "  *** DEADLOCK: it would wait for itself" : "  a second instance of one class nested without an order between them can deadlock against another thread nesting them the other way"));
                }
            }

            // Dependencies: every held class -> this class; a path back is a cycle.
            if (!trylock)
            {
                foreach (var held in state.Held)
                {
                    if (held.Class is not { } prev || prev == cls || prev.After.Contains(cls))
                    {
                        continue;
                    }
                    if (FindPath(cls, prev, c => c.After) is { } back)
                    {
                        Add(found, "circular locking dependency", $"cycle:{string.Join(">", back.Select(c => c.Name).Order(StringComparer.Ordinal))}",
                            $"{where} is acquiring '{cls.Name}' while holding '{prev.Name}':\n" +
                            $"  new dependency:      {prev.Name} -> {cls.Name}\n" +
                            $"  existing dependency: {string.Join(" -> ", back.Select(c => c.Name))}\n" +
                            $"  together a cycle: {string.Join(" -> ", back.Select(c => c.Name))} -> {cls.Name}; threads taking them in these orders can deadlock\n" +
                            $"  held: {state.DescribeHeld()}");
                    }
                    prev.After.Add(cls);
                    cls.Before.Add(prev);
                    CheckIrqOrder(found, prev, cls);
                }
            }

            // Usage: in which contexts this class is taken.
            // As lockdep's mark_usage(): USED_IN_* by context; ENABLED_* only with hard interrupts on
            // (with them off no softirq can run either), ENABLED_SOFTIRQ also needs softirqs enabled.
            var usage = LockUsage.None;
            bool inHardirq = ctx?.InHardirq ?? false;
            bool irqsOn = !inHardirq && !(ctx?.IrqsOff ?? false);
            if (inHardirq)
            {
                usage |= LockUsage.UsedInHardirq;
            }
            if (ctx?.InServingSoftirq ?? false)
            {
                usage |= LockUsage.UsedInSoftirq;
            }
            if (irqsOn)
            {
                usage |= LockUsage.EnabledHardirq;
                if (((ctx?.PreemptCount ?? 0) & PreemptCount.SoftirqMask) == 0)
                {
                    usage |= LockUsage.EnabledSoftirq;
                }
            }
            MarkUsage(found, cls, usage, where);
        }

        foreach (var report in found)
        {
            Reported?.Invoke(this, report);
        }
        return selfDeadlock;
    }

    /// <summary>lock_release() of a lock the thread does not hold: "bad unlock balance detected".</summary>
    internal void BadUnlock(string lockName, LockThreadState state)
    {
        Report("bad unlock balance", $"unlock:{lockName}:{Environment.CurrentManagedThreadId}",
            $"{Where(ThreadContext.Current)} is releasing '{lockName}', which it does not hold:\n  held: {state.DescribeHeld()}");
    }

    /// <summary>debug_check_no_locks_freed(): a lock disposed while some thread holds it.</summary>
    internal void FreedWhileHeld(string lockName, string holder)
    {
        Report("held lock freed", $"freed:{lockName}:{holder}",
            $"'{lockName}' was disposed by thread '{Thread.CurrentThread.Name}' while held by {holder}: whoever holds it will release freed memory in the kernel, and here waits on a dead lock");
    }

    private void Report(string kind, string key, string message)
    {
        var found = new List<LockValidatorReport>();
        lock (_graph)
        {
            Add(found, kind, key, message);
        }
        foreach (var report in found)
        {
            Reported?.Invoke(this, report);
        }
    }

    private void Add(List<LockValidatorReport> found, string kind, string key, string message)
    {
        if (_reported.Add(key))
        {
            var report = new LockValidatorReport(kind, message);
            _reports.Add(report);
            found.Add(report);
        }
    }

    private void MarkUsage(List<LockValidatorReport> found, LockClass cls, LockUsage usage, string where)
    {
        var added = usage & ~cls.Usage;
        if (added == LockUsage.None)
        {
            return;
        }
        cls.Usage |= added;
        foreach (LockUsage bit in new[] { LockUsage.UsedInHardirq, LockUsage.EnabledHardirq, LockUsage.UsedInSoftirq, LockUsage.EnabledSoftirq })
        {
            if ((added & bit) != 0)
            {
                cls.UsageTrace[bit] = where;
            }
        }

        CheckInconsistent(found, cls, LockUsage.UsedInHardirq, LockUsage.EnabledHardirq, "IN-HARDIRQ-W", "HARDIRQ-ON-W");
        CheckInconsistent(found, cls, LockUsage.UsedInSoftirq, LockUsage.EnabledSoftirq, "IN-SOFTIRQ-W", "SOFTIRQ-ON-W");

        // A class that just became irq-safe must not reach an irq-unsafe class, and one that just became
        // irq-unsafe must not be reachable from an irq-safe class.
        foreach (var (safe, unsafeBit, name) in IrqRules)
        {
            if ((added & safe) != 0 && Reach(cls, c => c.After, unsafeBit) is { } u)
            {
                ReportIrqOrder(found, cls, u, name);
            }
            if ((added & unsafeBit) != 0 && Reach(cls, c => c.Before, safe) is { } s)
            {
                ReportIrqOrder(found, s, cls, name);
            }
        }
    }

    private static readonly (LockUsage Safe, LockUsage Unsafe, string Name)[] IrqRules =
    [
        (LockUsage.UsedInHardirq, LockUsage.EnabledHardirq, "hardirq"),
        (LockUsage.UsedInSoftirq, LockUsage.EnabledSoftirq, "softirq"),
    ];

    private void CheckIrqOrder(List<LockValidatorReport> found, LockClass prev, LockClass next)
    {
        foreach (var (safe, unsafeBit, name) in IrqRules)
        {
            var s = (prev.Usage & safe) != 0 ? prev : Reach(prev, c => c.Before, safe);
            var u = (next.Usage & unsafeBit) != 0 ? next : Reach(next, c => c.After, unsafeBit);
            if (s is not null && u is not null)
            {
                ReportIrqOrder(found, s, u, name);
            }
        }
    }

    private void ReportIrqOrder(List<LockValidatorReport> found, LockClass safe, LockClass unsafeClass, string irq)
    {
        var safeBit = irq == "hardirq" ? LockUsage.UsedInHardirq : LockUsage.UsedInSoftirq;
        var unsafeBit = irq == "hardirq" ? LockUsage.EnabledHardirq : LockUsage.EnabledSoftirq;
        var path = safe == unsafeClass ? [safe] : FindPath(safe, unsafeClass, c => c.After) ?? [safe, unsafeClass];
        Add(found, $"{irq}-safe -> {irq}-unsafe lock order", $"{irq}-order:{safe.Name}>{unsafeClass.Name}",
            $"'{safe.Name}' is {irq}-safe (taken in {irq} context, first at {safe.UsageTrace.GetValueOrDefault(safeBit, "?")})\n" +
            $"and is held while taking, through {string.Join(" -> ", path.Select(c => c.Name))},\n" +
            $"'{unsafeClass.Name}', which is {irq}-unsafe (taken with {irq}s enabled, first at {unsafeClass.UsageTrace.GetValueOrDefault(unsafeBit, "?")}).\n" +
            $"  A {irq} that takes '{safe.Name}' can interrupt a holder of '{unsafeClass.Name}' on the same CPU while another CPU holds '{safe.Name}' and waits for '{unsafeClass.Name}': deadlock.\n" +
            $"  Take '{unsafeClass.Name}' with the {(irq == "hardirq" ? "_irqsave" : "_bh")} variant everywhere.");
    }

    private void CheckInconsistent(List<LockValidatorReport> found, LockClass cls, LockUsage inIrq, LockUsage irqOn, string inName, string onName)
    {
        if ((cls.Usage & inIrq) != 0 && (cls.Usage & irqOn) != 0)
        {
            Add(found, "inconsistent lock state", $"inconsistent:{cls.Name}:{inName}",
                $"inconsistent {{{inName}}} -> {{{onName}}} usage of '{cls.Name}':\n" +
                $"  {{{inName}}} first at {cls.UsageTrace.GetValueOrDefault(inIrq, "?")}\n" +
                $"  {{{onName}}} first at {cls.UsageTrace.GetValueOrDefault(irqOn, "?")}\n" +
                $"  the interrupt can arrive on the CPU of a holder that took it with interrupts enabled and spin on it forever.");
        }
    }

    /// <summary>A class reachable from <paramref name="from"/> (excluding it) that has <paramref name="bit"/>.</summary>
    private static LockClass? Reach(LockClass from, Func<LockClass, HashSet<LockClass>> edges, LockUsage bit)
    {
        var seen = new HashSet<LockClass> { from };
        var queue = new Queue<LockClass>(edges(from));
        while (queue.TryDequeue(out var c))
        {
            if (!seen.Add(c))
            {
                continue;
            }
            if ((c.Usage & bit) != 0)
            {
                return c;
            }
            foreach (var n in edges(c))
            {
                queue.Enqueue(n);
            }
        }
        return null;
    }

    /// <summary>Breadth-first path from <paramref name="from"/> to <paramref name="to"/>, both included, or null.</summary>
    private static List<LockClass>? FindPath(LockClass from, LockClass to, Func<LockClass, HashSet<LockClass>> edges)
    {
        var parent = new Dictionary<LockClass, LockClass?> { [from] = null };
        var queue = new Queue<LockClass>();
        queue.Enqueue(from);
        while (queue.TryDequeue(out var c))
        {
            if (c == to)
            {
                var path = new List<LockClass>();
                for (LockClass? at = c; at is not null; at = parent[at])
                {
                    path.Add(at);
                }
                path.Reverse();
                return path;
            }
            foreach (var n in edges(c))
            {
                if (parent.TryAdd(n, c))
                {
                    queue.Enqueue(n);
                }
            }
        }
        return null;
    }

    private static string Where(ThreadContext? ctx)
    {
        var sb = new StringBuilder();
        sb.Append('\'').Append(Thread.CurrentThread.Name ?? $"thread {Environment.CurrentManagedThreadId}").Append('\'');
        if (ctx is not null)
        {
            sb.Append(ctx.InHardirq ? " in hard-IRQ context" : ctx.InServingSoftirq ? " in softirq context" : " in task context")
              .Append(" on CPU ").Append(ctx.Cpu.Id);
            if (ctx.IrqsOff)
            {
                sb.Append(", irqs disabled");
            }
        }
        return sb.ToString();
    }
}
