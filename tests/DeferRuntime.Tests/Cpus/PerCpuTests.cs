using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;
using DeferRuntime.Platform;
using DeferRuntime.Softirqs;
using DeferRuntime.Workqueues;

namespace DeferRuntime.Tests.Cpus;

/// <summary>PerCpu&lt;T&gt; (DEFINE_PER_CPU, per_cpu, get_cpu_var, this_cpu_ptr, this_cpu_*) and in_task().</summary>
public class PerCpuTests
{
    [Fact]
    public void Slots_are_distinct_per_cpu_and_kept_apart_from_each_other_and_the_array_header()
    {
        using var rt = TestRuntime.Boot(3);
        var longs = new PerCpu<long>(rt);
        Assert.Equal(3, longs.CpuCount);
        Assert.Same(rt, longs.Runtime);
        for (int cpu = 0; cpu < 3; cpu++)
        {
            Assert.Equal(0, longs.For(cpu)); // alloc_percpu() zero-fills
            longs.For(cpu) = 10 + cpu;
        }
        Assert.Equal([10L, 11L, 12L], Enumerable.Range(0, 3).Select(c => longs.For(c)));

        AssertSeparated(longs);
        AssertSeparated(new PerCpu<byte>(rt));
        AssertSeparated(new PerCpu<Big>(rt));
        AssertSeparated(new PerCpu<object?>(rt));
    }

    [Fact]
    public void Per_cpu_of_a_cpu_the_runtime_does_not_have_throws()
    {
        using var rt = TestRuntime.Boot(2);
        var v = new PerCpu<int>(rt);
        foreach (int cpu in new[] { -1, 2, int.MaxValue, int.MinValue })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => v.For(cpu));
            Assert.Equal("cpu", e.ParamName);
            Assert.Contains($"per_cpu(var, {cpu}): CPU {cpu} does not exist", e.Message, StringComparison.Ordinal);
            Assert.Contains("0 to 1", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Get_cpu_var_disables_preemption_for_the_scope_and_names_the_callers_slot()
    {
        using var rt = TestRuntime.Boot(2);
        var v = new PerCpu<long>(rt);
        rt.Bound(1, () =>
        {
            int before = CpuContext.PreemptCountValue;
            Assert.False(CpuContext.InAtomic);
            using (var scope = v.GetCpuVar())
            {
                Assert.Equal(before + 1, CpuContext.PreemptCountValue);
                Assert.True(CpuContext.InAtomic);
                Assert.Equal(1, scope.Cpu);
                scope.Value += 5;
                Assert.True(Unsafe.AreSame(ref scope.Value, ref v.For(1)));
                Assert.True(Unsafe.AreSame(ref scope.Value, ref v.ThisCpu), "this_cpu_ptr() is allowed with preemption disabled");

                using (var inner = v.GetCpuVar())
                {
                    Assert.Equal(before + 2, CpuContext.PreemptCountValue); // nests, as preempt_disable() does
                    inner.Value++;
                }
                Assert.Equal(before + 1, CpuContext.PreemptCountValue);
            }
            Assert.Equal(before, CpuContext.PreemptCountValue);
            Assert.False(CpuContext.InAtomic);
        });
        Assert.Equal(0, v.For(0));
        Assert.Equal(6, v.For(1));
    }

    [Fact]
    public void Get_cpu_var_and_this_cpu_ptr_from_a_thread_of_no_cpu_of_the_runtime_throw()
    {
        using var rt = TestRuntime.Boot(1);
        using var other = TestRuntime.Boot(1);
        var v = new PerCpu<long>(rt);

        var e = Assert.Throws<InvalidOperationException>(() => { using var s = v.GetCpuVar(); });
        Assert.Contains("get_cpu_var() from thread", e.Message, StringComparison.Ordinal);
        Assert.Contains("belongs to no CPU", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<InvalidOperationException>(() => v.ThisCpu++);
        Assert.Contains("this_cpu_ptr() from thread", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, CpuContext.PreemptCountValue);

        // A task of another runtime's CPU 0 is not a task of this runtime's CPU 0.
        other.Bound(0, () =>
        {
            var inner = Assert.Throws<InvalidOperationException>(() => { using var s = v.GetCpuVar(); });
            Assert.Contains("belongs to no CPU of this runtime", inner.Message, StringComparison.Ordinal);
            Assert.Equal(0, CpuContext.PreemptCountValue);
        });
        Assert.Equal(0, v.For(0));
    }

    [Fact]
    public void This_cpu_ptr_needs_preemption_bh_or_interrupts_off_or_interrupt_context()
    {
        using var rt = TestRuntime.Boot(2);
        var v = new PerCpu<long>(rt);
        rt.Bound(0, () =>
        {
            var e = Assert.Throws<InvalidOperationException>(() => v.ThisCpu++);
            Assert.Contains("this_cpu_ptr() in preemptible context", e.Message, StringComparison.Ordinal);

            CpuContext.PreemptDisable();
            v.ThisCpu++;
            CpuContext.PreemptEnable();
            using (CpuContext.LocalBhDisable())
            {
                v.ThisCpu++;
            }
            using (CpuContext.LocalIrqSave())
            {
                v.ThisCpu++;
            }
        });
        rt.OnCpu(1, () => v.ThisCpu += 10); // hard IRQ

        using var ran = new ManualResetEventSlim();
        var tasklet = rt.CreateTasklet(_ =>
        {
            v.ThisCpu += 100;
            ran.Set();
        }, "percpu-ptr");
        rt.OnCpu(1, tasklet.Schedule);
        Wait.For(ran, "the tasklet on CPU 1");

        Exception? fromWorker = null;
        var item = new WorkStruct(_ => fromWorker = Record.Exception(() => v.ThisCpu++), "percpu-ptr");
        Assert.True(rt.SystemWq.QueueOn(1, item));
        item.FlushWork();
        Assert.Contains("this_cpu_ptr() in preemptible context", Assert.IsType<InvalidOperationException>(fromWorker).Message, StringComparison.Ordinal);

        Assert.Equal(3, v.For(0));
        Assert.Equal(110, v.For(1));
    }

    [Fact]
    public void This_cpu_ops_from_a_hard_irq_a_tasklet_a_softirq_and_work_items_act_on_the_running_cpus_slot()
    {
        using var rt = TestRuntime.Boot(2);
        var v = new PerCpu<long>(rt);
        var ran = new CountdownEvent(2);
        var tasklet = rt.CreateTasklet(_ =>
        {
            v.ThisCpuAdd(10);
            ran.Signal();
        }, "percpu-add");
        rt.OpenSoftirq(SoftirqVector.Block, () =>
        {
            v.ThisCpuAdd(100);
            ran.Signal();
        });
        var work = new WorkStruct(_ => v.ThisCpuAdd(1000), "percpu-add");
        var bhWork = new WorkStruct(_ => v.ThisCpuAdd(10000), "percpu-add-bh");

        for (int cpu = 0; cpu < 2; cpu++)
        {
            ran.Reset();
            rt.OnCpu(cpu, () =>
            {
                v.ThisCpuInc();                       // hard IRQ
                tasklet.Schedule();                   // runs on this CPU
                rt.RaiseSoftirq(SoftirqVector.Block); // so does the softirq
            });
            Wait.Until(() => ran.IsSet, $"CPU {cpu}'s tasklet and softirq");
            Assert.True(rt.SystemWq.QueueOn(cpu, work));
            work.FlushWork();
            rt.Bound(cpu, () => Assert.True(rt.SystemBhWq.Queue(bhWork)));
            bhWork.FlushWork();

            Assert.Equal(11111, v.For(cpu));
            for (int c = cpu + 1; c < 2; c++)
            {
                Assert.Equal(0, v.For(c));
            }
        }
        Assert.Equal(2 * 11111, v.Sum());
        ran.Dispose();
    }

    [Fact]
    public void The_local_slot_is_the_bound_cpus_wherever_the_thread_runs_and_the_cores_cpu_for_a_thread_of_no_cpu()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsWindows())
        {
            return; // no pinning: the core a thread runs on cannot be chosen
        }
        using var rt = TestRuntime.Boot(2);
        var v = new PerCpu<long>(rt);
        int core0 = rt.Cpus[0].Core;

        // A task of CPU 1 running on CPU 0's core (a task is not pinned by kthread_bind here) still counts
        // on CPU 1: the OS core decides only for threads of no CPU.
        rt.Bound(1, () =>
        {
            Assert.Null(ThreadPlacement.PinCurrentThread(core0));
            Wait.Until(() => Thread.GetCurrentProcessorId() == core0, "the task to run on CPU 0's core");
            v.ThisCpuInc();
        });
        Assert.Equal(0, v.For(0));
        Assert.Equal(1, v.For(1));

        // A thread of no CPU on CPU 0's core counts on CPU 0 (ProcessorLocal: the CPU pinned there). It
        // waits until .NET's processor-id cache, which this_cpu_inc() reads too, names that core.
        Guarded.Run(() =>
        {
            Assert.Null(ThreadPlacement.PinCurrentThread(core0));
            Wait.Until(() => Thread.GetCurrentProcessorId() == core0, "the thread to run on CPU 0's core");
            v.ThisCpuInc();
        }, "no-cpu");
        Assert.Equal(1, v.For(0));
        Assert.Equal(1, v.For(1));
    }

    [Fact]
    public void This_cpu_ops_have_the_kernels_semantics_for_int_long_uint_and_ulong()
    {
        using var rt = TestRuntime.Boot(2);
        var i = new PerCpu<int>(rt);
        var l = new PerCpu<long>(rt);
        var u = new PerCpu<uint>(rt);
        var ul = new PerCpu<ulong>(rt);
        rt.Bound(1, () =>
        {
            i.ThisCpuWrite(5);
            Assert.Equal(5, i.ThisCpuCmpxchg(5, 7));  // matched: returns the old value, stores the new
            Assert.Equal(7, i.ThisCpuRead());
            Assert.Equal(7, i.ThisCpuCmpxchg(5, 9));  // no match: returns what is there, stores nothing
            Assert.Equal(7, i.ThisCpuRead());
            Assert.Equal(7, i.ThisCpuXchg(3));
            Assert.Equal(13, i.ThisCpuAddReturn(10));
            i.ThisCpuSub(4);
            i.ThisCpuInc();
            i.ThisCpuDec();
            i.ThisCpuDec();
            Assert.Equal(8, i.ThisCpuRead());
            i.ThisCpuSub(int.MinValue);                // wraps, as the kernel's unsigned arithmetic does
            Assert.Equal(unchecked(8 - int.MinValue), i.ThisCpuRead());
            i.ThisCpuWrite(8);

            l.ThisCpuWrite(long.MaxValue - 1);
            Assert.Equal(long.MaxValue - 1, l.ThisCpuCmpxchg(long.MaxValue - 1, 40));
            Assert.Equal(40, l.ThisCpuCmpxchg(1, 2));
            Assert.Equal(40, l.ThisCpuXchg(41));
            Assert.Equal(50, l.ThisCpuAddReturn(9));
            l.ThisCpuAdd(-60);
            l.ThisCpuSub(-5);
            l.ThisCpuInc();
            l.ThisCpuDec();
            Assert.Equal(-5, l.ThisCpuRead());

            u.ThisCpuSub(1);
            Assert.Equal(uint.MaxValue, u.ThisCpuRead());
            u.ThisCpuInc();
            Assert.Equal(0u, u.ThisCpuRead());
            Assert.Equal(0u, u.ThisCpuCmpxchg(0, 3));
            Assert.Equal(3u, u.ThisCpuXchg(4));
            Assert.Equal(6u, u.ThisCpuAddReturn(2));
            u.ThisCpuAdd(1);
            u.ThisCpuDec();

            ul.ThisCpuDec();
            Assert.Equal(ulong.MaxValue, ul.ThisCpuRead());
            Assert.Equal(ulong.MaxValue, ul.ThisCpuCmpxchg(ulong.MaxValue, 1));
            Assert.Equal(1UL, ul.ThisCpuXchg(2));
            Assert.Equal(12UL, ul.ThisCpuAddReturn(10));
            ul.ThisCpuSub(2);
            ul.ThisCpuInc();
            ul.ThisCpuAdd(1);
            ul.ThisCpuWrite(ul.ThisCpuRead() - 2);
        });
        Assert.Equal(8, i.For(1));
        Assert.Equal(-5, l.For(1));
        Assert.Equal(6u, u.For(1));
        Assert.Equal(10UL, ul.For(1));
        Assert.Equal(0, i.For(0) | (int)l.For(0) | (int)u.For(0) | (int)ul.For(0));

        // Sum widens int and uint: per-CPU halves of a counter may be far apart or negative.
        i.For(0) = int.MaxValue;
        i.For(1) = int.MaxValue;
        Assert.Equal(2L * int.MaxValue, i.Sum());
        u.For(0) = uint.MaxValue;
        Assert.Equal(uint.MaxValue + 6UL, u.Sum());
        l.For(0) = 5;
        Assert.Equal(0, l.Sum());
    }

    [Fact]
    public void This_cpu_inc_from_many_threads_of_every_kind_totals_exactly()
    {
        const int Cpus = 2, BoundPerCpu = 2, Unbound = 2;
        int perThread = Stress.Scale(20_000, 1_000_000);
        using var rt = TestRuntime.Boot(Cpus);
        var v = new PerCpu<long>(rt);
        var other = TestRuntime.Boot(1);
        try
        {
            using var start = new ManualResetEventSlim();
            var threads = new List<Guarded>();
            for (int cpu = 0; cpu < Cpus; cpu++)
            {
                for (int t = 0; t < BoundPerCpu; t++)
                {
                    int c = cpu;
                    threads.Add(Guarded.Start(() =>
                    {
                        using var binding = rt.Cpus[c].BindCurrentThread();
                        Wait.For(start, "the start");
                        for (int n = 0; n < perThread; n++)
                        {
                            v.ThisCpuInc();
                        }
                    }, $"inc/{c}.{t}"));
                }
            }
            for (int t = 0; t < Unbound; t++)
            {
                threads.Add(Guarded.Start(() =>
                {
                    Wait.For(start, "the start");
                    for (int n = 0; n < perThread; n++)
                    {
                        v.ThisCpuInc(); // the slot of the core it runs on, which may change under it
                    }
                }, $"inc/none.{t}"));
            }
            // A task of another runtime counts as a thread of no CPU of this one.
            threads.Add(Guarded.Start(() =>
            {
                using var binding = other.Cpus[0].BindCurrentThread();
                Wait.For(start, "the start");
                for (int n = 0; n < perThread; n++)
                {
                    v.ThisCpuInc();
                }
            }, "inc/other"));
            // Hard IRQs of each CPU take their share meanwhile: IPIs that add and take back.
            start.Set();
            for (int n = 0; n < 200; n++)
            {
                rt.OnCpu(n % Cpus, () =>
                {
                    v.ThisCpuAdd(3);
                    v.ThisCpuDec();
                });
            }
            foreach (var t in threads)
            {
                t.Join();
            }

            Assert.Equal(((Cpus * BoundPerCpu) + Unbound + 1) * (long)perThread + (200 * 2), v.Sum());
            for (int cpu = 0; cpu < Cpus; cpu++)
            {
                Assert.True(v.For(cpu) >= (BoundPerCpu * (long)perThread) + (100 * 2), $"CPU {cpu}'s own tasks and IRQs all land in its slot ({v.For(cpu)})");
            }
        }
        finally
        {
            other.Dispose();
        }
    }

    [Fact]
    public void Hot_paths_allocate_nothing()
    {
        using var rt = TestRuntime.Boot(2);
        var v = new PerCpu<long>(rt);
        var i = new PerCpu<int>(rt);
        long boundBytes = -1;
        rt.Bound(0, () =>
        {
            Loop(); // JIT and tiering first
            long before = GC.GetAllocatedBytesForCurrentThread();
            Loop();
            boundBytes = GC.GetAllocatedBytesForCurrentThread() - before;
        });
        Loop();
        long unboundBefore = GC.GetAllocatedBytesForCurrentThread();
        Loop();
        long unboundBytes = GC.GetAllocatedBytesForCurrentThread() - unboundBefore;

        Assert.Equal(0, boundBytes);
        Assert.Equal(0, unboundBytes);

        void Loop()
        {
            bool bound = CpuContext.CurrentCpu is not null;
            for (int n = 0; n < 10_000; n++)
            {
                v.ThisCpuInc();
                v.ThisCpuAdd(2);
                _ = v.ThisCpuCmpxchg(0, 1);
                i.ThisCpuInc();
                v.For(n & 1)++;
                _ = CpuContext.InTask;
                if (bound)
                {
                    using var scope = v.GetCpuVar();
                    scope.Value++;
                    v.ThisCpu++;
                }
            }
            _ = v.Sum();
        }
    }

    [Fact]
    public void In_task_is_false_only_in_hard_irq_and_while_serving_a_softirq()
    {
        using var rt = TestRuntime.Boot(2);
        var seen = new Dictionary<string, bool>();
        void Note(string where)
        {
            lock (seen)
            {
                seen[where] = CpuContext.InTask;
            }
        }

        Note("thread of no CPU");
        rt.OpenSoftirq(SoftirqVector.Block, () => Note("softirq"));
        rt.Bound(0, () =>
        {
            Note("bound task");
            CpuContext.PreemptDisable();
            Note("preempt disabled");
            CpuContext.PreemptEnable();
            using (CpuContext.LocalIrqSave())
            {
                Note("irqs disabled");
            }
            // The softirq runs on this same thread, at the local_bh_enable() that ends the section.
            using (CpuContext.LocalBhDisable())
            {
                Note("bh disabled");
                rt.RaiseSoftirq(SoftirqVector.Block);
            }
        });
        rt.OnCpu(1, () => Note("hard IRQ"));

        using var ran = new ManualResetEventSlim();
        var tasklet = rt.CreateTasklet(_ =>
        {
            Note("tasklet");
            ran.Set();
        }, "in-task");
        rt.OnCpu(1, tasklet.Schedule);
        Wait.For(ran, "the tasklet");

        var work = new WorkStruct(_ => Note("work item"), "in-task");
        Assert.True(rt.SystemWq.QueueOn(1, work));
        work.FlushWork();
        var bhWork = new WorkStruct(_ => Note("bh work item"), "in-task-bh");
        rt.Bound(1, () => Assert.True(rt.SystemBhWq.Queue(bhWork)));
        bhWork.FlushWork();

        var irqs = rt.Irqs;
        int irq = irqs.AllocateIrq();
        using var threadRan = new ManualResetEventSlim();
        using (irqs.RequestThreadedIrq(irq, (_, _) =>
        {
            Note("threaded irq's primary handler");
            return IrqReturn.WakeThread;
        }, (_, _) =>
        {
            Note("irq thread");
            threadRan.Set();
            return IrqReturn.Handled;
        }, IrqFlags.None, "in-task"))
        {
            irqs.AssertEdge(irq);
            Wait.For(threadRan, "the irq thread");
        }

        Assert.Equal(new Dictionary<string, bool>
        {
            ["thread of no CPU"] = true,
            ["bound task"] = true,
            ["preempt disabled"] = true,
            ["irqs disabled"] = true,
            ["bh disabled"] = true, // in_softirq(), yet a task: not serving one
            ["softirq"] = false,
            ["hard IRQ"] = false,
            ["tasklet"] = false,
            ["work item"] = true,
            ["bh work item"] = false,
            ["threaded irq's primary handler"] = false,
            ["irq thread"] = true,
        }, seen);
    }

    private static void AssertSeparated<T>(PerCpu<T> v)
    {
        int size = Unsafe.SizeOf<T>();
        ref byte data = ref Unsafe.As<T, byte>(ref MemoryMarshal.GetArrayDataReference(v.SlotArray));
        Assert.True(Unsafe.ByteOffset(ref data, ref Unsafe.As<T, byte>(ref v.For(0))) >= PerCpu<T>.SeparationBytes,
            $"{typeof(T).Name}: slot 0 must sit {PerCpu<T>.SeparationBytes} bytes past the array header");
        for (int cpu = 1; cpu < v.CpuCount; cpu++)
        {
            nint gap = Unsafe.ByteOffset(ref v.For(cpu - 1), ref v.For(cpu)) - size;
            Assert.True(gap >= PerCpu<T>.SeparationBytes, $"{typeof(T).Name}: {gap} bytes between the end of slot {cpu - 1} and slot {cpu}");
            Assert.True(gap + size >= 64);
        }
        nint tail = Unsafe.ByteOffset(ref Unsafe.As<T, byte>(ref v.For(v.CpuCount - 1)), ref Unsafe.Add(ref data, v.SlotArray.Length * size)) - size;
        Assert.True(tail >= PerCpu<T>.SeparationBytes, $"{typeof(T).Name}: {tail} bytes between the last slot and whatever follows the array");
    }

    /// <summary>A per-CPU type larger than the separation.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 200)]
    private struct Big;
}
