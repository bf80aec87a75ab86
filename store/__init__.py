"""The results store: how a results folder is laid out on disk, and how its files are written and read.

The ground floor of the repository: ``study``, ``training`` and ``analysis`` import it, and it imports none
of them (only parameters.py, numpy and pandas).

* :mod:`store.layout`: every file, folder and marker name of a results folder, and the paths built from them;
* :mod:`store.errors`: ResultsFileError, ResultsFolderError and how a command ends on bad input;
* :mod:`store.files`: atomic writing, completion markers, packed (kept) files;
* :mod:`store.records`: the environment.json reader and where a study's pretraining is;
* :mod:`store.parameter_files`: reading and writing parameters files (the one reader of their preset);
* :mod:`store.schema`: the CSV columns and the codecs between rows and values;
* :mod:`store.tables`: the checked CSV reader and the rows that hold a run at a stage;
* :mod:`store.exclusion`: run exclusion after pretraining and the lists of excluded runs;
* :mod:`store.assembly`: the study's files assembled from its jobs' pieces;
* :mod:`store.logs`: the logging of every entry point (log.txt of a results folder).

layout, errors, files, records, parameter_files and logs import only the standard library and parameters.py,
so that ``python main.py --help`` answers without loading pandas; the other modules load numpy and pandas.
"""
