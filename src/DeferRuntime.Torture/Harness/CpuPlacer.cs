using DeferRuntime.Cpus;

namespace DeferRuntime.Torture.Harness;

/// <summary>
/// One load thread's place: bound to a virtual CPU as a task (kthread_bind) and pinned to that CPU's core,
/// or a thread of no CPU pinned to a core; at each shuffle epoch it moves elsewhere, as torture_shuffle
/// moves torture kthreads between CPUs. Moves happen only between operations, never with a lock held.
/// </summary>
internal sealed class CpuPlacer : IDisposable
{
    private readonly Runtime _runtime;
    private readonly LoadControl _control;
    private readonly PlacementLog _log;
    private readonly bool _bind;
    private CpuBinding? _binding;
    private int _epoch;

    public CpuPlacer(Runtime runtime, LoadControl control, PlacementLog log, bool bind, int firstCpu)
    {
        _runtime = runtime;
        _control = control;
        _log = log;
        _bind = bind;
        _epoch = control.Epoch;
        MoveTo(firstCpu % runtime.Cpus.Count);
    }

    /// <summary>The virtual CPU the thread is on (bound), or whose core it is pinned to (not bound).</summary>
    public int Cpu { get; private set; }

    /// <summary>Moves to another CPU if a shuffle happened since the last look.</summary>
    public void MaybeShuffle(ref TortureRandom rng)
    {
        int epoch = _control.Epoch;
        if (epoch == _epoch)
        {
            return;
        }
        _epoch = epoch;
        int cpus = _runtime.Cpus.Count;
        MoveTo(cpus == 1 ? Cpu : (Cpu + 1 + rng.Next(cpus - 1)) % cpus);
        _log.Moved();
    }

    /// <summary>
    /// Moves to CPU (<paramref name="home"/> + epoch) mod CPUs if a shuffle happened since the last look.
    /// Every thread of a test that rotates moves by the same step, so each CPU keeps its share of threads
    /// from one epoch to the next (a per-CPU test needs several tasks on every CPU), while each thread
    /// still visits every CPU.
    /// </summary>
    public void MaybeRotate(int home)
    {
        int epoch = _control.Epoch;
        if (epoch == _epoch)
        {
            return;
        }
        _epoch = epoch;
        int cpu = (int)(((uint)home + (uint)epoch) % (uint)_runtime.Cpus.Count);
        if (cpu != Cpu)
        {
            MoveTo(cpu);
            _log.Moved();
        }
    }

    /// <summary>Unbinds (before the runtime shuts down, which waits for bindings).</summary>
    public void Dispose()
    {
        _binding?.Dispose();
        _binding = null;
    }

    private void MoveTo(int cpu)
    {
        if (_bind)
        {
            _binding?.Dispose();
            _binding = null;
            _binding = _runtime.Cpus[cpu].BindCurrentThread();
        }
        Cpu = cpu;
        _log.Pin(_runtime.Cpus[cpu].Core);
    }
}
