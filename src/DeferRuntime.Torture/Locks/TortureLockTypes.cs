namespace DeferRuntime.Torture;

/// <summary>
/// locktorture's torture_type: the lock types a run can torture, by the names locktorture uses where it
/// has one. Each wraps one of the runtime's primitives (<c>DeferRuntime.Locking</c>), except
/// <see cref="LockBusted"/>, which is broken on purpose.
/// </summary>
public static class TortureLockTypes
{
    /// <summary>KernelSpinlock: spin_lock() / spin_unlock().</summary>
    public const string SpinLock = "spin_lock";

    /// <summary>KernelSpinlock: spin_lock_irq() / spin_unlock_irq(); also checks that no hard IRQ runs on the holder's CPU meanwhile.</summary>
    public const string SpinLockIrq = "spin_lock_irq";

    /// <summary>KernelSpinlock: spin_lock_irqsave() / spin_unlock_irqrestore(); also checks that no hard IRQ runs on the holder's CPU meanwhile.</summary>
    public const string SpinLockIrqSave = "spin_lock_irqsave";

    /// <summary>KernelSpinlock: spin_lock_bh() / spin_unlock_bh(); also checks that no softirq runs on the holder's CPU meanwhile.</summary>
    public const string SpinLockBh = "spin_lock_bh";

    /// <summary>KernelMutex: mutex_lock() / mutex_unlock().</summary>
    public const string MutexLock = "mutex_lock";

    /// <summary>RwSemaphore: down_write() / up_write() writers and down_read() / up_read() readers.</summary>
    public const string RwsemLock = "rwsem_lock";

    /// <summary>KernelSemaphore of one unit: down() / up().</summary>
    public const string SemLock = "sem_lock";

    /// <summary>lock_busted: a test-and-set lock whose test and set are two steps, so it does not exclude; a run with it must fail.</summary>
    public const string LockBusted = "lock_busted";

    /// <summary>Every lock type "all" selects, in run order (lock_busted is never part of "all", as in locktorture).</summary>
    public static IReadOnlyList<string> Names { get; } = [SpinLock, SpinLockIrq, SpinLockIrqSave, SpinLockBh, MutexLock, RwsemLock, SemLock];

    /// <summary>
    /// The lock types <paramref name="requested"/> names, "all" expanded, duplicates dropped, in run order,
    /// with lock_busted last when <paramref name="busted"/>. Unknown names throw, listing the known ones
    /// (locktorture's "invalid torture type").
    /// </summary>
    public static IReadOnlyList<string> Resolve(IEnumerable<string> requested, bool busted)
    {
        ArgumentNullException.ThrowIfNull(requested);
        var result = new List<string>();
        foreach (string raw in requested)
        {
            string name = raw.Trim().ToLowerInvariant();
            if (name == TortureOptions.AllLockTypes)
            {
                result.AddRange(Names.Where(n => !result.Contains(n)));
            }
            else if (Names.Contains(name) || name == LockBusted)
            {
                if (!result.Contains(name))
                {
                    result.Add(name);
                }
            }
            else
            {
                throw new ArgumentException(
                    $"lock-torture: invalid torture type: \"{raw}\"; lock-torture types: {string.Join(" ", Names.Append(LockBusted))} (or \"all\").",
                    nameof(requested));
            }
        }
        if (busted && !result.Contains(LockBusted))
        {
            result.Add(LockBusted);
        }
        // Run order is the order of Names, lock_busted last, whatever order they were asked for in.
        return result.OrderBy(n => n == LockBusted ? int.MaxValue : IndexOf(n)).ToArray();
    }

    private static int IndexOf(string name)
    {
        for (int i = 0; i < Names.Count; i++)
        {
            if (Names[i] == name)
            {
                return i;
            }
        }
        return -1;
    }
}
