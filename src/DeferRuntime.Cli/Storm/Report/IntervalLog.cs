using System.Diagnostics;
using System.Globalization;
using System.Text;
using DeferRuntime.Cli.Storm.Paths;
using HdrHistogram;

namespace DeferRuntime.Cli.Storm.Report;

/// <summary>
/// --histogram-log FILE: an HdrHistogram interval log (HistogramLogWriter, format 1.3) with one histogram per
/// path, stage and second of the measured storm, tagged <c>path/stage</c> (under --compare
/// <c>label/path/stage</c>). Values are ns; the log's Interval_Max column is in ms, as jHiccup's.
/// </summary>
/// <remarks>
/// The storm keeps cumulative per-CPU histograms only. Once a second, on the progress thread (never on a
/// handler), each stage's histograms are merged into a preallocated one and the interval is the difference
/// from the previous merge: counts only grow, so a merge that races a writer sees each bucket at some
/// moment between the two samples and no event is counted twice or lost; the last interval is taken after
/// the drain, so the intervals sum to the run's histogram exactly. Encoding an interval (the library's
/// compressed form) allocates about a quarter MB per histogram on that thread: the GC counts include it.
/// </remarks>
internal sealed class IntervalLog : IDisposable
{
    public static readonly string[] StageTags = ["top-half", "bh-start", "bh-end"];
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly string _file;
    private Stream? _stream;
    private HistogramLogWriter? _writer;
    private readonly List<Tracker> _trackers = [];
    private readonly Stopwatch _clock = new();
    private TimeSpan _next;
    private long _lastSampleMs;

    public IntervalLog(string file)
    {
        _file = file;
    }

    /// <summary>Why the log could not be written, or null.</summary>
    public string? Error { get; private set; }

    /// <summary>Intervals written (histograms, all tags).</summary>
    public int Written { get; private set; }

    /// <summary>Starts the intervals of a measured storm over <paramref name="paths"/> (their histograms just reset).</summary>
    public void Begin(string label, IReadOnlyList<StormPath> paths)
    {
        _trackers.Clear();
        string prefix = label == "storm" ? "" : label.Replace(' ', '_').Replace(',', '_') + "/";
        foreach (var path in paths)
        {
            for (int stage = 0; stage < StageTags.Length; stage++)
            {
                _trackers.Add(new Tracker(path.Latency, (LatencyStage)stage, $"{prefix}{path.Name}/{StageTags[stage]}"));
            }
        }
        _lastSampleMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Guard(() =>
        {
            if (_writer is null)
            {
                FileReports.CreateDirectoryOf(_file);
                _stream = new Utf16ToUtf8Stream(new FileStream(_file, FileMode.Create, FileAccess.Write, FileShare.Read));
                _writer = new HistogramLogWriter(_stream);
                Invariant(() => _writer.Write(DateTimeOffset.FromUnixTimeMilliseconds(_lastSampleMs).UtcDateTime));
            }
        });
        _clock.Restart();
        _next = Interval;
    }

    /// <summary>Called every few ms by the runner's wait: samples once a second.</summary>
    public void Tick()
    {
        if (_trackers.Count > 0 && _clock.Elapsed >= _next)
        {
            Sample();
            _next += Interval;
        }
    }

    /// <summary>The last interval, after the drain (no writer left).</summary>
    public void Finish()
    {
        if (_trackers.Count > 0)
        {
            Sample();
            _trackers.Clear();
        }
    }

    private void Sample()
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var t in _trackers)
        {
            var interval = t.Next(_lastSampleMs, now);
            if (_writer is not null && Error is null)
            {
                Guard(() => Invariant(() => _writer.Append(interval)));
                Written++;
            }
        }
        _lastSampleMs = now;
    }

    private void Guard(Action write)
    {
        if (Error is not null)
        {
            return;
        }
        try
        {
            write();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            Error = $"--histogram-log {_file}: {e.Message}";
        }
    }

    // The writer formats numbers with the current culture: the log format wants '.' decimals.
    private static void Invariant(Action action)
    {
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        try
        {
            action();
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }

    public void Dispose()
    {
        _writer?.Dispose();
        _stream?.Dispose();
    }

    /// <summary>One path's stage: the previous cumulative merge, the current one, the interval between.</summary>
    private sealed class Tracker(StageHistograms source, LatencyStage stage, string tag)
    {
        private LongHistogram _previous = new(1, StageHistograms.HighestNs, 3);
        private LongHistogram _current = new(1, StageHistograms.HighestNs, 3);
        private readonly LongHistogram _interval = new(1, StageHistograms.HighestNs, 3) { Tag = tag };

        public LongHistogram Next(long startMs, long endMs)
        {
            source.MergeInto(stage, _current);
            _interval.Reset();
            foreach (var v in _current.RecordedValues())
            {
                long delta = v.CountAtValueIteratedTo - _previous.GetCountAtValue(v.ValueIteratedTo);
                if (delta > 0)
                {
                    _interval.RecordValueWithCount(v.ValueIteratedTo, delta);
                }
            }
            _interval.StartTimeStamp = startMs;
            _interval.EndTimeStamp = endMs;
            (_previous, _current) = (_current, _previous);
            return _interval;
        }
    }

    /// <summary>
    /// HdrHistogram.NET's log writer writes UTF-16; HdrHistogram's other tools (HistogramLogProcessor, the
    /// log analyzer) read ASCII. This re-encodes what it writes as UTF-8 without a byte order mark.
    /// </summary>
    private sealed class Utf16ToUtf8Stream(Stream inner) : Stream
    {
        private readonly Decoder _decoder = Encoding.Unicode.GetDecoder();
        private readonly Encoder _encoder = new UTF8Encoding(false).GetEncoder();
        private bool _started;

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            var chars = new char[_decoder.GetCharCount(buffer, flush: false)];
            int n = _decoder.GetChars(buffer, chars, flush: false);
            var text = chars.AsSpan(0, n);
            if (!_started && text.Length > 0)
            {
                _started = true;
                if (text[0] == '\uFEFF')
                {
                    text = text[1..];
                }
            }
            var bytes = new byte[_encoder.GetByteCount(text, flush: false)];
            int m = _encoder.GetBytes(text, bytes, flush: false);
            inner.Write(bytes, 0, m);
        }

        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
