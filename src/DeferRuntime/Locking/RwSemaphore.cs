using System.Runtime.CompilerServices;

namespace DeferRuntime.Locking;

/// <summary>
/// struct rw_semaphore (kernel/locking/rwsem.c): many readers or one writer, sleeping. Waiters are
/// served in FIFO order: once a writer waits, new readers queue behind it, so writers do not starve;
/// a release grants the head of the queue (a writer, or every reader up to the next writer). Refused in
/// atomic context like every sleeping lock; only the writer may <see cref="UpWrite"/>.
/// </summary>
public sealed class RwSemaphore : IDisposable, ILockdepTarget
{
    private readonly Lock _lock = new();
    private int _readers; // L: _lock; active readers
    private LockThreadState? _writer; // L: _lock; the owning writer
    private WaitList _waiters; // L: _lock
    private readonly LockdepMap _map;

    string ILockdepTarget.LockdepName => _map.Name;

    LockClass? ILockdepTarget.LockdepClass => _map.Class;

    /// <summary>init_rwsem(): a named rw-semaphore (the validator's class), or unnamed (classed by its declaration site).</summary>
    public RwSemaphore(string? name = null, LockValidator? validator = null, [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        _map = new LockdepMap(name, file, line, validator);
    }

    /// <summary>The rw-semaphore's name.</summary>
    public string Name => _map.Name;

    /// <summary>rwsem_is_locked(): held by a writer or by any reader.</summary>
    public bool IsLocked
    {
        get
        {
            lock (_lock)
            {
                return _writer is not null || _readers > 0;
            }
        }
    }

    /// <summary>Active readers now.</summary>
    public int ReaderCount
    {
        get
        {
            lock (_lock)
            {
                return _readers;
            }
        }
    }

    /// <summary>down_read(): shares the semaphore with other readers; sleeps while a writer holds or waits for it.</summary>
    public void DownRead()
    {
        MightSleep.Check("down_read()");
        var state = LockThreadState.Current;
        _map.Acquire(this, state, read: true);
        var node = WaitNode.Current;
        lock (_lock)
        {
            if (_writer is null && _waiters.IsEmpty)
            {
                _readers++;
                state.Push(this, read: true);
                return;
            }
            node.Prepare(exclusive: false, reader: true);
            _waiters.AddLast(node);
        }
        WaitGranted(node);
        state.Push(this, read: true);
    }

    /// <summary>down_read_trylock(): true if read access was free now.</summary>
    public bool TryDownRead()
    {
        var state = LockThreadState.Current;
        lock (_lock)
        {
            if (_writer is not null || !_waiters.IsEmpty)
            {
                return false;
            }
            _readers++;
        }
        _map.Acquire(this, state, read: true, trylock: true);
        state.Push(this, read: true);
        return true;
    }

    /// <summary>up_read().</summary>
    public void UpRead()
    {
        var state = LockThreadState.Current;
        lock (_lock)
        {
            if (_readers == 0)
            {
                throw new InvalidOperationException($"up_read() of '{Name}', which no reader holds: up without a matching down_read().");
            }
        }
        _map.Release(this, state, "up_read()");
        lock (_lock)
        {
            if (--_readers == 0)
            {
                GrantWaiters();
            }
        }
    }

    /// <summary>down_write(): exclusive access; sleeps while anyone holds it or waits ahead.</summary>
    public void DownWrite()
    {
        MightSleep.Check("down_write()");
        var state = LockThreadState.Current;
        _map.Acquire(this, state);
        var node = WaitNode.Current;
        lock (_lock)
        {
            if (ReferenceEquals(_writer, state))
            {
                throw new InvalidOperationException($"down_write() of '{Name}' by its own writer: rw-semaphores are not recursive and this would deadlock.");
            }
            if (_writer is null && _readers == 0 && _waiters.IsEmpty)
            {
                _writer = state;
                state.Push(this);
                return;
            }
            node.Prepare(exclusive: true);
            _waiters.AddLast(node);
        }
        WaitGranted(node);
        state.Push(this);
    }

    /// <summary>down_write_trylock(): true if it was entirely free now.</summary>
    public bool TryDownWrite()
    {
        var state = LockThreadState.Current;
        lock (_lock)
        {
            if (_writer is not null || _readers > 0 || !_waiters.IsEmpty)
            {
                return false;
            }
            _writer = state;
        }
        _map.Acquire(this, state, trylock: true);
        state.Push(this);
        return true;
    }

    /// <summary>up_write(): only the writer may.</summary>
    public void UpWrite()
    {
        var state = LockThreadState.Current;
        ThrowIfNotWriter(state, "up_write()");
        _map.Release(this, state, "up_write()");
        lock (_lock)
        {
            _writer = null;
            GrantWaiters();
        }
    }

    /// <summary>downgrade_write(): turns the caller's write hold into a read hold without letting a writer in between.</summary>
    public void DowngradeWrite()
    {
        var state = LockThreadState.Current;
        ThrowIfNotWriter(state, "downgrade_write()");
        _map.Release(this, state, "downgrade_write()");
        lock (_lock)
        {
            _writer = null;
            _readers++;
            GrantWaiters();
        }
        state.Push(this, read: true);
    }

    /// <summary>Reports to the validator if disposed while a writer holds it.</summary>
    public void Dispose()
    {
        LockThreadState? writer;
        lock (_lock)
        {
            writer = _writer;
        }
        _map.Freed(writer);
    }

    private void ThrowIfNotWriter(LockThreadState state, string caller)
    {
        lock (_lock)
        {
            if (!ReferenceEquals(_writer, state))
            {
                throw new InvalidOperationException(_writer is null
                    ? $"{caller} of '{Name}', which no writer holds."
                    : $"{caller} of '{Name}' by thread '{Thread.CurrentThread.Name}', but the writer is '{_writer.Thread.Name}': only the writer may release it.");
            }
        }
    }

    /// <summary>rwsem_mark_wake(): grants the head of the queue: one writer, or the readers before the next writer.</summary>
    private void GrantWaiters()
    {
        while (_waiters.First is { } first)
        {
            if (first.Reader)
            {
                if (_writer is not null)
                {
                    return;
                }
                _readers++;
            }
            else
            {
                if (_writer is not null || _readers > 0)
                {
                    return;
                }
                _writer = first.Owner;
            }
            _waiters.Remove(first);
            first.Granted = true;
            first.Wake();
            if (!first.Reader)
            {
                return;
            }
        }
    }

    private static void WaitGranted(WaitNode node)
    {
        while (!node.Granted)
        {
            node.Block(long.MaxValue, CancellationToken.None);
        }
    }
}
