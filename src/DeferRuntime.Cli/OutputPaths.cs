namespace DeferRuntime.Cli;

/// <summary>
/// Output paths are checked before anything runs, so a typo costs nothing: the directory must exist or be
/// creatable and the file writable. The check creates what it must to find out (the directories, the
/// file) and removes what it created; the writers create them again at the end.
/// </summary>
internal static class OutputPaths
{
    /// <summary>Checks that <paramref name="path"/> (given as <paramref name="option"/>) can be written as a file; throws <see cref="CliUsageException"/>.</summary>
    public static void CheckFile(string option, string path)
    {
        string full = Full(option, path);
        if (Directory.Exists(full))
        {
            throw new CliUsageException($"{option} {path}: is a directory; give a file name");
        }
        string? created = EnsureDirectory(option, path, Path.GetDirectoryName(full));
        try
        {
            bool existed = File.Exists(full);
            // Open without truncating: an existing report stays as it is until the run has one to replace it.
            using (new FileStream(full, existed ? FileMode.Open : FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
            {
            }
            if (!existed)
            {
                File.Delete(full);
            }
        }
        catch (Exception e) when (IsIo(e))
        {
            throw new CliUsageException($"{option} {path}: cannot write: {e.Message}");
        }
        finally
        {
            Remove(created);
        }
    }

    /// <summary>Checks that files can be written into directory <paramref name="path"/>; throws <see cref="CliUsageException"/>.</summary>
    public static void CheckDirectory(string option, string path)
    {
        string full = Full(option, path);
        if (File.Exists(full))
        {
            throw new CliUsageException($"{option} {path}: is a file; give a directory");
        }
        string? created = EnsureDirectory(option, path, full);
        try
        {
            string probe = Path.Combine(full, $".deferrt-probe-{Guid.NewGuid():N}");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose))
            {
            }
        }
        catch (Exception e) when (IsIo(e))
        {
            throw new CliUsageException($"{option} {path}: cannot write into it: {e.Message}");
        }
        finally
        {
            Remove(created);
        }
    }

    /// <summary>True for the exceptions a file system operation throws for a bad or unwritable path.</summary>
    public static bool IsIo(Exception e) => e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException or System.Security.SecurityException;

    private static string Full(string option, string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new CliUsageException($"{option}: empty path");
        }
        try
        {
            return Path.GetFullPath(path);
        }
        catch (Exception e) when (IsIo(e))
        {
            throw new CliUsageException($"{option} {path}: not a valid path: {e.Message}");
        }
    }

    /// <summary>Creates <paramref name="directory"/> if needed; returns the topmost directory it created (to remove), or null.</summary>
    private static string? EnsureDirectory(string option, string path, string? directory)
    {
        if (string.IsNullOrEmpty(directory) || Directory.Exists(directory))
        {
            return null;
        }
        // Find the nearest ancestor that exists: it must be a directory.
        string? topmost = directory;
        for (string? up = Path.GetDirectoryName(directory); up is not null; up = Path.GetDirectoryName(up))
        {
            if (Directory.Exists(up))
            {
                break;
            }
            if (File.Exists(up))
            {
                throw new CliUsageException($"{option} {path}: {up} is a file, not a directory");
            }
            topmost = up;
        }
        if (File.Exists(directory))
        {
            throw new CliUsageException($"{option} {path}: {directory} is a file, not a directory");
        }
        try
        {
            Directory.CreateDirectory(directory);
            return topmost;
        }
        catch (Exception e) when (IsIo(e))
        {
            throw new CliUsageException($"{option} {path}: cannot create directory {directory}: {e.Message}");
        }
    }

    private static void Remove(string? created)
    {
        if (created is null)
        {
            return;
        }
        try
        {
            Directory.Delete(created, recursive: true);
        }
        catch (Exception e) when (IsIo(e))
        {
            // Left behind, empty: the writers would have created it anyway.
        }
    }
}
