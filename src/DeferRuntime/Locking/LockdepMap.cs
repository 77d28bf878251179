using System.Runtime.CompilerServices;

namespace DeferRuntime.Locking;

/// <summary>
/// struct lockdep_map: a lock's name and, when its validator was on at construction, its class. With
/// no class every hook below is a single null check.
/// </summary>
internal readonly struct LockdepMap
{
    public LockdepMap(string? name, string file, int line, LockValidator? validator)
    {
        Name = name ?? $"{Path.GetFileName(file)}:{line}";
        Class = (validator ?? LockValidator.Default).ClassFor(Name);
    }

    public string Name { get; }

    public LockClass? Class { get; }

    /// <summary>lock_acquire() before waiting: reports what the acquisition makes possible; refuses a certain self-deadlock.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Acquire(object lockObject, LockThreadState state, bool read = false, bool trylock = false)
    {
        if (Report(lockObject, state, read, trylock))
        {
            ThrowSelfDeadlock();
        }
    }

    /// <summary>As <see cref="Acquire"/> without the refusal: true when it is a certain self-deadlock (the caller throws its own error).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Report(object lockObject, LockThreadState state, bool read = false, bool trylock = false) =>
        Class is { } cls && cls.Validator.Acquire(cls, lockObject, Name, state, read, trylock);

    /// <summary>lock_release(): pops the lock from the thread's held stack; releasing a lock not held is refused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release(object lockObject, LockThreadState state, string caller)
    {
        if (!state.Pop(lockObject))
        {
            ThrowBadUnlock(state, caller);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowSelfDeadlock() =>
        throw new InvalidOperationException($"lock validator: thread '{Thread.CurrentThread.Name}' already holds '{Name}'; acquiring it again would deadlock on itself (see LockValidator.Reports).");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadUnlock(LockThreadState state, string caller)
    {
        Class?.Validator.BadUnlock(Name, state);
        throw new InvalidOperationException($"{caller} of '{Name}' by thread '{Thread.CurrentThread.Name}', which does not hold it ({state.DescribeHeld()}): only the holder may release a lock.");
    }

    /// <summary>debug_check_no_locks_freed(): reports disposing a lock some thread still holds.</summary>
    public void Freed(LockThreadState? holder)
    {
        if (Class is { } cls && holder is not null)
        {
            cls.Validator.FreedWhileHeld(Name, $"thread '{holder.Thread.Name ?? holder.Thread.ManagedThreadId.ToString(System.Globalization.CultureInfo.InvariantCulture)}'");
        }
    }
}
