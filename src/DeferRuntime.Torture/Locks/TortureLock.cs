using DeferRuntime.Cpus;
using DeferRuntime.Locking;

namespace DeferRuntime.Torture.Locks;

/// <summary>What a lock's write side must also keep out on the holder's CPU, beyond other holders.</summary>
internal enum HeldContext
{
    /// <summary>Nothing: a plain or sleeping lock.</summary>
    None,

    /// <summary>Hard IRQs: the irq variants hold the CPU's irq gate (local_irq_disable).</summary>
    Hardirq,

    /// <summary>Softirqs: the bh variant holds the CPU's bh gate (local_bh_disable).</summary>
    Softirq,
}

/// <summary>
/// struct lock_torture_ops: how the writer and reader threads take and release one lock type. Every
/// thread calls with its own <c>tid</c> (writers 0.., readers 0..), which is where per-thread state such
/// as saved irq flags lives, as locktorture keeps cxt.cur_ops->flags.
/// </summary>
internal abstract class TortureLock : IDisposable
{
    protected TortureLock(string name) => Name = name;

    public string Name { get; }

    /// <summary>True for lock types with a read side (readers run beside the writers).</summary>
    public virtual bool HasReaders => false;

    /// <summary>What the write side must keep out on the holder's CPU.</summary>
    public virtual HeldContext Context => HeldContext.None;

    /// <summary>True for lock_busted, which is expected to fail.</summary>
    public virtual bool IsBusted => false;

    public abstract void WriteLock(int tid);

    public abstract void WriteUnlock(int tid);

    public virtual void ReadLock(int tid) => throw new NotSupportedException($"{Name} has no read side.");

    public virtual void ReadUnlock(int tid) => throw new NotSupportedException($"{Name} has no read side.");

    /// <summary>Called with the write side held, after the exclusion guard has claimed its slot.</summary>
    public virtual void WriteHeld(int tid)
    {
    }

    /// <summary>Releases the lock object (for the runtime's locks, the validator's freed-while-held check).</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
    }

    /// <summary>True for the lock types with a read side (the default split of threads differs for them).</summary>
    public static bool HasReadSide(string name) => name == TortureLockTypes.RwsemLock;

    /// <summary>The lock for <paramref name="name"/> (one of <see cref="TortureLockTypes"/>), for <paramref name="writers"/> writer threads.</summary>
    public static TortureLock Create(string name, int writers) => name switch
    {
        TortureLockTypes.SpinLock => new SpinTorture(name, SpinTorture.Variant.Plain, writers),
        TortureLockTypes.SpinLockIrq => new SpinTorture(name, SpinTorture.Variant.Irq, writers),
        TortureLockTypes.SpinLockIrqSave => new SpinTorture(name, SpinTorture.Variant.IrqSave, writers),
        TortureLockTypes.SpinLockBh => new SpinTorture(name, SpinTorture.Variant.Bh, writers),
        TortureLockTypes.MutexLock => new MutexTorture(name),
        TortureLockTypes.RwsemLock => new RwsemTorture(name),
        TortureLockTypes.SemLock => new SemTorture(name),
        TortureLockTypes.LockBusted => new BustedLock(name),
        _ => throw new ArgumentException($"lock-torture: invalid torture type: \"{name}\"", nameof(name)),
    };
}

/// <summary>spin_lock and its irq, irqsave and bh variants on one <see cref="KernelSpinlock"/>.</summary>
internal sealed class SpinTorture : TortureLock
{
    public enum Variant
    {
        Plain,
        Irq,
        IrqSave,
        Bh,
    }

    private readonly KernelSpinlock _lock;
    private readonly Variant _variant;
    private readonly LocalIrqFlags[] _flags; // index: writer tid; each written and read only by its writer

    public SpinTorture(string name, Variant variant, int writers)
        : base(name)
    {
        _lock = new KernelSpinlock("torture." + name);
        _variant = variant;
        _flags = new LocalIrqFlags[writers];
    }

    public override HeldContext Context => _variant switch
    {
        Variant.Irq or Variant.IrqSave => HeldContext.Hardirq,
        Variant.Bh => HeldContext.Softirq,
        _ => HeldContext.None,
    };

    public override void WriteLock(int tid)
    {
        switch (_variant)
        {
            case Variant.Plain:
                _lock.Lock();
                break;
            case Variant.Irq:
                _lock.LockIrq();
                break;
            case Variant.IrqSave:
                _flags[tid] = _lock.LockIrqSave();
                break;
            case Variant.Bh:
                _lock.LockBh();
                break;
        }
    }

    public override void WriteUnlock(int tid)
    {
        switch (_variant)
        {
            case Variant.Plain:
                _lock.Unlock();
                break;
            case Variant.Irq:
                _lock.UnlockIrq();
                break;
            case Variant.IrqSave:
                _lock.UnlockIrqRestore(_flags[tid]);
                break;
            case Variant.Bh:
                _lock.UnlockBh();
                break;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _lock.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>mutex_lock on one <see cref="KernelMutex"/>.</summary>
internal sealed class MutexTorture(string name) : TortureLock(name)
{
    private readonly KernelMutex _mutex = new("torture." + name);

    public override void WriteLock(int tid) => _mutex.Lock();

    public override void WriteUnlock(int tid) => _mutex.Unlock();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _mutex.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>rwsem_lock: writers down_write, readers down_read, on one <see cref="RwSemaphore"/>.</summary>
internal sealed class RwsemTorture(string name) : TortureLock(name)
{
    private readonly RwSemaphore _sem = new("torture." + name);

    public override bool HasReaders => true;

    public override void WriteLock(int tid) => _sem.DownWrite();

    public override void WriteUnlock(int tid) => _sem.UpWrite();

    public override void ReadLock(int tid) => _sem.DownRead();

    public override void ReadUnlock(int tid) => _sem.UpRead();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _sem.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>A <see cref="KernelSemaphore"/> of one unit used as a sleeping lock (down / up).</summary>
internal sealed class SemTorture(string name) : TortureLock(name)
{
    private readonly KernelSemaphore _sem = new(1);

    public override void WriteLock(int tid) => _sem.Down();

    public override void WriteUnlock(int tid) => _sem.Up();
}
